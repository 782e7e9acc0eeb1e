"""The cluster directory: where a controller keeps its keys, FURLs, logs and pids.

``$IPKERNEL_DIR`` if set, else ``~/.ipkernel``; every command takes
``--cluster-dir`` to use another.  Layout::

    security/   mode 0700: certificates and FURL files (mode 0600), port files
    log/        mode 0700: process logs (mode 0600: they name ports, pids and
                what the engines ran)
    pid/        pid files
"""
import os
from pathlib import Path

ENGINE_FURL = "ipcontroller-engine.furl"
MULTIENGINE_FURL = "ipcontroller-mec.furl"
TASK_FURL = "ipcontroller-tc.furl"
#: The dashboard's URL with its token (written by ipcontroller, 0600).
DASHBOARD_URL = "ipcontroller-dashboard.url"


def default_path():
    """The cluster directory to use when none is given."""
    env = os.environ.get("IPKERNEL_DIR")
    return Path(env).expanduser() if env else Path.home() / ".ipkernel"


def ensure_private_dir(path):
    """Create ``path`` (and parents) if needed and make it mode 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def open_private(path, flags=os.O_WRONLY | os.O_APPEND | os.O_CREAT):
    """``os.open`` of ``path`` that leaves it readable by its owner only (mode
    0600), whatever the umask, also when the file already existed with a wider
    mode.  Usable as the ``opener`` of the built-in ``open``."""
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private_file(path, text, durable=True):
    """Write ``text`` to ``path`` atomically with mode 0600.

    Readers see the old content or the new one, never a partial file.
    ``durable=False`` skips the fsync: for files that describe a running
    process (pid, port and FURL files), which are written anew at every
    start and must not slow it down.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class ClusterDir:
    """Paths inside one cluster directory (created on demand)."""

    def __init__(self, path=None, log_dir=None):
        self.path = Path(path).expanduser() if path else default_path()
        self._log_dir = Path(log_dir).expanduser().absolute() if log_dir else None

    def create(self):
        """Create the directory tree with safe permissions; return self."""
        self.path.mkdir(parents=True, exist_ok=True)
        ensure_private_dir(self.security)
        ensure_private_dir(self.log)
        self.pid.mkdir(exist_ok=True)
        return self

    @property
    def security(self):
        return self.path / "security"

    @property
    def log(self):
        """The log folder: ``log/`` unless another was given (``ipcluster --logdir``)."""
        return self._log_dir or self.path / "log"

    @property
    def pid(self):
        return self.path / "pid"

    def furl_file(self, name):
        """Path of FURL file ``name`` (e.g. :data:`ENGINE_FURL`)."""
        return self.security / name

    def cert_file(self, role):
        """Path of the certificate (with private key) of Tub ``role``."""
        return self.security / f"ipcontroller-{role}.pem"

    def port_file(self, role):
        """Path of the file remembering the port of Tub ``role``."""
        return self.security / f"ipcontroller-{role}.port"

    def dashboard_url_file(self):
        """Path of the file holding the dashboard's URL (with its token)."""
        return self.security / DASHBOARD_URL

    def dashboard_url(self):
        """The running controller's dashboard URL (with its token), or None
        (no controller, or one started with ``--no-dashboard``)."""
        try:
            return self.dashboard_url_file().read_text().strip() or None
        except OSError:
            return None

    def pid_file(self, name):
        return self.pid / f"{name}.pid"

    def __repr__(self):
        return f"ClusterDir({str(self.path)!r})"
