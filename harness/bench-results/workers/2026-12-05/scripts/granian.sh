cd /tmp/w-src/fixtures/wsgi && exec /work/main/.venv/bin/granian --interface wsgi --host 127.0.0.1 --port $1 --workers $2 --blocking-threads 4 --backlog 2048 bench_app:app
