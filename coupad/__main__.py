from coupad.cli import main

raise SystemExit(main())
