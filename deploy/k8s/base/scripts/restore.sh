#!/bin/sh
# Restores a dump written by backup.sh: the kiln-restore CronJob (suspended; started by hand,
# see deploy/k8s/README.md "Restore") runs this file; tests/test_backup_scripts.py runs the
# same bytes.
#
#   DATABASE_URL  the services' URL (a SQLAlchemy driver suffix is dropped)
#   BACKUP_DIR    where the dumps are (default /backups)
#   BACKUP_FILE   the dump's file name in BACKUP_DIR, or `latest` (default): the name
#                 BACKUP_DIR/latest records
#
# In one transaction, drops the auth and tasks schemas with everything in them (including
# tables a later migration added, which pg_restore --clean would not know about) and loads
# the dump: it either restores everything or changes nothing.
set -eu
: "${DATABASE_URL:?DATABASE_URL is not set}"
dir=${BACKUP_DIR:-/backups}
name=${BACKUP_FILE:-latest}
url=$(printf '%s' "$DATABASE_URL" | sed -E 's#^postgres(ql)?\+[A-Za-z0-9_]+://#postgresql://#')

if [ "$name" = latest ]; then
  [ -s "$dir/latest" ] || { echo "no $dir/latest: give BACKUP_FILE" >&2; exit 1; }
  name=$(cat "$dir/latest")
fi
file=$dir/$name
[ -f "$file" ] || { echo "no such dump: $file" >&2; exit 1; }
echo "restoring $file"
failed=$(mktemp)
# COMMIT is sent only after pg_restore read the whole dump; otherwise psql ends without it and
# PostgreSQL rolls everything back.
{
  echo "BEGIN; SET client_min_messages = warning;"
  echo 'DROP SCHEMA IF EXISTS auth, tasks CASCADE;'
  if pg_restore --no-owner --no-privileges --file=- "$file"; then echo 'COMMIT;'; else echo x > "$failed"; fi
} | psql --no-psqlrc --quiet --set=ON_ERROR_STOP=1 --dbname="$url" > /dev/null
if [ -s "$failed" ]; then
  echo "pg_restore could not read $file: nothing was changed" >&2
  exit 1
fi
echo "restore complete: $file"
