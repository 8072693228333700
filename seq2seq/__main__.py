"""`python -m seq2seq` runs the command-line interface."""

from seq2seq.cli import main

main()
