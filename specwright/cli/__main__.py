import sys

from specwright.cli import main

sys.exit(main())
