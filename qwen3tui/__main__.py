from qwen3tui.cli import main

raise SystemExit(main())
