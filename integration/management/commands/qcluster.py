"""`manage.py qcluster`: django-q2's worker cluster, stopping gracefully (integration/ops/worker.py).

On SIGTERM or SIGINT: the flag is set (tasks not yet started are handed back to the broker), the cluster stops
pulling tasks, the calls in flight finish and their answers are recorded, then the process exits. Under systemd
use `KillMode=mixed` so that only this process gets the SIGTERM (docs/deploy/bridge-worker.service).
"""

from __future__ import annotations

import os
import signal

from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand

from integration.ops import worker


class Command(DjangoQCommand):
    help = "Start the django-q2 worker cluster; SIGTERM finishes the calls in flight, hands back the rest, exits."

    def handle(self, *args, **options) -> None:
        settings.SECRET_KEY  # noqa: B018 - as django-q2's command: signing needs it, fail before forking
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        worker.install()
        cluster = Cluster()  # installs django-q2's own SIGTERM/SIGINT handler (stop the sentinel, wait for it)

        def stop(signum, frame) -> None:
            worker.request_stop()
            cluster.sig_handler(signum, frame)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
