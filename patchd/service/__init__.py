"""Running patchd as a system service: unit files, plists, the Windows service, and
``patchd service install|uninstall|status``."""
