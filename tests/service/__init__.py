"""The service definitions, `patchd service`, the Windows service, man pages and completions."""
