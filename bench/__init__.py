"""Load generators and figures; run by hand or with `make bench`, never by the test command."""
