import sys

from rsr_core.cli import main

sys.exit(main())
