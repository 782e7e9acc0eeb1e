"""Batch-scheduler launchers: engines (and the controller) as scheduler jobs.

:mod:`~ipkernel.cluster.batch.base` holds the generic launcher and documents
the job-script template placeholders (``{n}``, ``{engine_command}``,
``{cluster_dir}``, ``{log_dir}``, ``{queue}``, ``{job_name}``); one module
per scheduler: :mod:`~ipkernel.cluster.batch.slurm`,
:mod:`~ipkernel.cluster.batch.pbs`, :mod:`~ipkernel.cluster.batch.sge`,
:mod:`~ipkernel.cluster.batch.lsf`.
"""
