"""docs/cli.md's command reference is what the parsers say (regenerate with
``python -m actcam_ext.cli._docs docs/cli.md``)."""

from pathlib import Path

from actcam_ext.cli import _docs
from actcam_ext.cli.main import SUBCOMMANDS, build_parser

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_in_sync_with_the_parsers():
    text = CLI_MD.read_text()
    generated = text.split(_docs.BEGIN, 1)[1].split(_docs.END, 1)[0]
    assert generated.strip() == _docs.reference().strip(), \
        "docs/cli.md is stale: run python -m actcam_ext.cli._docs docs/cli.md"


def test_every_subcommand_and_option_is_documented():
    reference = _docs.reference()
    commands = build_parser().commands
    assert len(commands) >= len(SUBCOMMANDS)
    for name, parser in commands.items():
        assert f"### `actcam {name}`" in reference
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in reference, (name, option)
