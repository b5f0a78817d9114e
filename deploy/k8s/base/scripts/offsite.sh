#!/bin/sh
# Copies dumps to and from an S3-compatible bucket with the AWS CLI (image amazon/aws-cli),
# next to backup.sh and restore.sh. Off unless BACKUP_S3_URI is set (from the optional
# Secret kiln-backup-s3, see deploy/k8s/README.md "Backups").
#
#   offsite.sh put   copies the dump BACKUP_DIR/latest names to BACKUP_S3_URI/
#   offsite.sh get   copies BACKUP_S3_URI/BACKUP_FILE into BACKUP_DIR (when not there yet)
#
#   BACKUP_S3_URI     s3://bucket/prefix ("" = off-cluster copies are off)
#   AWS_ENDPOINT_URL  for non-AWS stores (MinIO, R2, ...); credentials: AWS_ACCESS_KEY_ID,
#                     AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
set -eu
dir=${BACKUP_DIR:-/backups}
if [ -z "${BACKUP_S3_URI:-}" ]; then
  echo "BACKUP_S3_URI is not set: no off-cluster copy"
  exit 0
fi
target=${BACKUP_S3_URI%/}
case "${1:-}" in
  put)
    name=$(cat "$dir/latest")
    aws s3 cp --only-show-errors "$dir/$name" "$target/$name"
    echo "copied $name to $target/"
    ;;
  get)
    name=${BACKUP_FILE:-latest}
    if [ "$name" = latest ] || [ -f "$dir/$name" ]; then
      echo "using $dir/${name}"
      exit 0
    fi
    aws s3 cp --only-show-errors "$target/$name" "$dir/$name"
    echo "fetched $target/$name"
    ;;
  *)
    echo "usage: offsite.sh put|get" >&2
    exit 2
    ;;
esac
