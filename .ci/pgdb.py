"""Create (or empty) a PostgreSQL database for the CI run."""

import sys

import psycopg

name = sys.argv[1]
with psycopg.connect("postgresql://postgres@127.0.0.1/postgres", autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.execute(f'CREATE DATABASE "{name}"')
