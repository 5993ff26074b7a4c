from unitgrad.cli import main

raise SystemExit(main())
