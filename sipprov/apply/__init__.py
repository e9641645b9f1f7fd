"""Making Asterisk match the database: snapshot, render, files, applier, AMI."""
