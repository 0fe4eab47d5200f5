"""`python -m lowcomm ...` is the `lowcomm` command (torchrun starts ranks with `-m lowcomm`)."""

from lowcomm.cli.main import main

raise SystemExit(main())
