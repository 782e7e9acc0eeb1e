"""The ipcluster modes' command lines: what each mode accepts and what it builds."""
import pytest

from ipkernel.cluster.app import (build_parser, controller_args, daemon_argv, default_count,
                                  make_cluster)
from ipkernel.cluster.cluster import Cluster
from ipkernel.cluster.local import LocalCluster
from ipkernel.clusterdir import ClusterDir


def parse(*argv):
    options = build_parser().parse_args([str(a) for a in argv])
    if options.command == "mpirun":
        options.command = "mpiexec"
    if options.timeout is None:
        options.timeout = 60.0
    if options.n is None:
        options.n = default_count(options)
    return options


@pytest.mark.parametrize("mode", ["mpiexec", "mpirun", "ssh", "slurm", "pbs", "sge", "lsf"])
def test_every_mode_is_a_command_with_daemon_and_the_common_options(mode, tmp_path):
    (tmp_path / "c.py").write_text("engines = {'node1': 2}\n")
    extra = ["--clusterfile", tmp_path / "c.py"] if mode == "ssh" else []
    options = parse(mode, "-n", 3, "--daemon", "--engine-port", 4100, "--client-port", 4101,
                    "-r", "--logdir", tmp_path / "logs", *extra)
    assert options.n == 3 and options.daemon and options.reuse_furls
    assert options.logdir == str(tmp_path / "logs")
    assert controller_args(options) == ["--log-level", "info", "--reuse-furls",
                                        "--client-port", "4101", "--engine-port", "4100"]


def test_batch_modes_take_a_queue_and_a_script_with_short_options(tmp_path):
    options = parse("slurm", "-q", "short", "-s", tmp_path / "job.sh", "--controller", "slurm")
    cluster = make_cluster(options, ClusterDir(tmp_path))
    assert isinstance(cluster, Cluster)
    assert (cluster.mode, cluster.controller_mode) == ("slurm", "slurm")
    assert cluster.options["queue"] == "short"
    assert cluster.options["script"] == str(tmp_path / "job.sh")
    # --quiet still works there; -q is the queue
    assert parse("sge", "--quiet", "-q", "all.q").log_level == "warn"


def test_mpiexec_takes_mpi_and_its_own_arguments(tmp_path):
    options = parse("mpirun", "--mpi", "mpi4py", "--mpiexec-args=-f hosts -ppn 2")
    cluster = make_cluster(options, ClusterDir(tmp_path))
    assert cluster.mode == "mpiexec"
    assert cluster.options["mpi"] == "mpi4py"
    assert cluster.options["mpi_args"] == ["-f", "hosts", "-ppn", "2"]


def test_ssh_needs_a_clusterfile(capsys):
    with pytest.raises(SystemExit):
        parse("ssh", "-n", 2)
    assert "--clusterfile" in capsys.readouterr().err


def test_ssh_engines_default_to_the_clusterfile_total(tmp_path, capsys):
    (tmp_path / "c.py").write_text("engines = {'node1': 3, 'me@node2': 2}\n")
    assert parse("ssh", "--clusterfile", tmp_path / "c.py").n == 5
    assert parse("ssh", "--clusterfile", tmp_path / "c.py", "-n", 2).n == 2
    assert parse("slurm").n == 4
    from ipkernel.cluster.app import main
    assert main(["ssh", "--clusterfile", str(tmp_path / "none.py"),
                 "--cluster-dir", str(tmp_path / "cd")]) == 2
    assert "none.py" in capsys.readouterr().err


def test_ssh_passes_the_clusterfile_and_the_ssh_config(tmp_path):
    (tmp_path / "c.py").write_text("engines = {'node1': 2}\n")
    options = parse("ssh", "--clusterfile", tmp_path / "c.py", "--ssh-config", tmp_path / "cfg",
                    "--engine-cmd", "/opt/env/bin/python -m ipkernel.engine")
    cluster = make_cluster(options, ClusterDir(tmp_path))
    assert cluster.options["clusterfile"] == str(tmp_path / "c.py")
    assert cluster.options["ssh_config"] == str(tmp_path / "cfg")
    assert cluster.engine_command == "/opt/env/bin/python -m ipkernel.engine"


def test_local_stays_a_local_cluster(tmp_path):
    options = parse("local", "-n", 2, "--no-restart")
    assert isinstance(make_cluster(options, ClusterDir(tmp_path)), LocalCluster)


def test_an_unknown_controller_mode_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse("slurm", "--controller", "ssh")
    assert "invalid choice: 'ssh'" in capsys.readouterr().err


def test_the_background_ipcluster_runs_the_same_command_without_daemon(tmp_path):
    argv = ["slurm", "-n", "2", "--daemon", "-q", "short"]
    built = daemon_argv(argv, ClusterDir(tmp_path))
    assert built[1:3] == ["-m", "ipkernel.cluster"]
    assert built[3:] == ["slurm", "-n", "2", "-q", "short", "--cluster-dir", str(tmp_path)]
    assert parse(*built[3:]).daemon is False
