"""Tools for people, not the runtime: simulate, bench, lip-sync bench, tool evaluation, check, motor test, sing."""
