import sys

from osvemu.cli import main

sys.exit(main())
