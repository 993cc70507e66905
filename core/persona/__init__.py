"""Who Billy is: traits and their levels, persona files read and edited in place, the store in use."""
