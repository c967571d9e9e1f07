"""``python -m patchd`` runs the command line."""

from patchd.cli.main import main

raise SystemExit(main())
