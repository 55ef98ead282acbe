import sys

from tools.attacks.lab import main

sys.exit(main())
