from olmirror.cli import main

raise SystemExit(main())
