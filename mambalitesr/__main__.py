from mambalitesr.cli import main

raise SystemExit(main())
