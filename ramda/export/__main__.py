import sys

from ramda.export.run import main

sys.exit(main())
