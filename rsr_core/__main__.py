import sys

try:
    from rsr_core.cli import main

    code = main()
except KeyboardInterrupt:  # before main's own handler is in place
    print("interrupted", file=sys.stderr)
    code = 130
sys.exit(code)
