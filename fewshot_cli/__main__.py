"""`python -m fewshot_cli train ...` behaves exactly like the `fewshot` console script."""

from fewshot_cli.cli import main

if __name__ == "__main__":
    main()
