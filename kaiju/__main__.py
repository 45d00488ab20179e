"""`python -m kaiju` is `kaiju-run`."""

from kaiju.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
