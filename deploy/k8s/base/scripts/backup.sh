#!/bin/sh
# Dumps Kiln's PostgreSQL schemas (auth, tasks): the kiln-backup CronJob runs this file, from
# the ConfigMap kiln-backup-scripts generated from it; tests/test_backup_scripts.py runs the
# same bytes against a real PostgreSQL and restores the result.
#
#   DATABASE_URL      the services' URL; a SQLAlchemy driver suffix (postgresql+psycopg://)
#                     is dropped, since pg_dump speaks libpq
#   BACKUP_DIR        where dumps go (default /backups)
#   BACKUP_KEEP_DAYS  dumps older than this are deleted (default 14)
#
# Writes BACKUP_DIR/kiln-<UTC timestamp>.dump (pg_dump custom format) as .partial and renames
# it once complete, records its name in BACKUP_DIR/latest, and prints its path last.
set -eu
: "${DATABASE_URL:?DATABASE_URL is not set}"
dir=${BACKUP_DIR:-/backups}
keep_days=${BACKUP_KEEP_DAYS:-14}
url=$(printf '%s' "$DATABASE_URL" | sed -E 's#^postgres(ql)?\+[A-Za-z0-9_]+://#postgresql://#')

file=$dir/kiln-$(date -u +%Y%m%dT%H%M%SZ).dump
trap 'rm -f "$file.partial"' EXIT
pg_dump --format=custom --no-owner --no-privileges \
  --schema=auth --schema=tasks --file="$file.partial" --dbname="$url"
mv "$file.partial" "$file"
trap - EXIT
basename "$file" > "$dir/latest"
find "$dir" -name 'kiln-*.dump' -mtime "+$keep_days" -delete
echo "backup written: $file"
