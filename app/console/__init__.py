"""The console at /console: server-rendered pages for the data-protection officer and the ML
engineer, another client of the same domain services as the API (see docs/CONSOLE.md)."""
