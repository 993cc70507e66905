"""Language backends behind the `Brain` interface: Ollama, OpenAI-compatible, embedded llama.cpp.

Each module imports its client library only when its brain is built, so a missing optional
package breaks only the backend that needs it.
"""
