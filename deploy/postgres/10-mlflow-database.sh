#!/bin/sh
# First start of the Postgres volume only: a second database for MLflow's backend store
# (the image creates POSTGRES_DB, the prediction log, by itself).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${MLFLOW_DB:-mlflow}\""
