"""Running the ``actcam`` command in-process, for the command-line tests."""

from actcam_ext import cli


def run_cli(argv, capsys):
    """(exit code, stdout, stderr) of ``actcam ARGV``; argparse's usage errors give their code."""
    try:
        rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err
