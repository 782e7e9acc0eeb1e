"""The clusterfile of ``ipcluster ssh`` (:mod:`ipkernel.cluster.clusterfile`), tier 1."""
import pytest

from ipkernel.cluster import clusterfile
from ipkernel.cluster.clusterfile import ClusterFileError


def write(tmp_path, text, name="hosts.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_0_10_format(tmp_path):
    path = write(tmp_path, "# my lab\nsend_furl = True\n"
                           "engines = {'node1': 4,\n 'me@node2.lab': 2}\n")
    cf = clusterfile.load(path)
    assert cf.engines == {"node1": 4, "me@node2.lab": 2}
    assert list(cf.engines) == ["node1", "me@node2.lab"]    # the file's order
    assert cf.send_furl is True and cf.total == 6 and cf.path == path


def test_send_furl_defaults_to_false_and_python_works(tmp_path):
    cf = clusterfile.load(write(tmp_path, "n = 3\nengines = dict((f'node{i}', n) "
                                          "for i in range(1, 3))\n_private = 1\n"))
    assert cf.engines == {"node1": 3, "node2": 3} and cf.send_furl is False


def test_missing_engines_names_the_file_and_what_it_defines(tmp_path):
    path = write(tmp_path, "send_furl = False\nengine = {'a': 1}\n")
    with pytest.raises(ClusterFileError) as e:
        clusterfile.load(path)
    message = str(e.value)
    assert str(path) in message and "no 'engines'" in message
    assert "it defines: engine, send_furl" in message and "engines = {" in message


@pytest.mark.parametrize("count", ["0", "-2", "'4'", "2.5", "True", "None"])
def test_a_count_that_is_not_a_positive_int(tmp_path, count):
    path = write(tmp_path, f"engines = {{'node1': 1, 'node2': {count}}}\n")
    with pytest.raises(ClusterFileError, match=r"count of 'node2' must be a positive int") as e:
        clusterfile.load(path)
    assert str(path) in str(e.value)


def test_syntax_error_with_its_line(tmp_path):
    path = write(tmp_path, "send_furl = True\nengines = {'node1': 4,,}\n")
    with pytest.raises(ClusterFileError, match=r"line 2: invalid syntax") as e:
        clusterfile.load(path)
    assert str(path) in str(e.value) and "{'node1': 4,,}" in str(e.value)


def test_errors_while_running_with_their_line(tmp_path):
    path = write(tmp_path, "send_furl = True\n\nengines = {'a': count}\n")
    with pytest.raises(ClusterFileError, match=r"line 3: NameError: name 'count'"):
        clusterfile.load(path)
    with pytest.raises(ClusterFileError, match=r"line 1: a clusterfile cannot import"):
        clusterfile.load(write(tmp_path, "import os\nengines = {'a': 1}\n", "b.py"))
    # restricted globals: no open(), no __import__
    with pytest.raises(ClusterFileError, match=r"line 1: NameError: name 'open'"):
        clusterfile.load(write(tmp_path, "x = open('/etc/passwd')\n", "c.py"))
    with pytest.raises(ClusterFileError, match=r"NameError: name '__import__'"):
        clusterfile.load(write(tmp_path, "os = __import__('os')\n", "d.py"))


def test_bad_send_furl_and_hosts(tmp_path):
    with pytest.raises(ClusterFileError, match=r"send_furl must be True or False, not 'yes'"):
        clusterfile.load(write(tmp_path, "send_furl = 'yes'\nengines = {'a': 1}\n"))
    for host in ["-oProxyCommand=x", "two words", "a;rm", "", "me@"]:
        with pytest.raises(ClusterFileError, match="host"):
            clusterfile.check_engines({host: 1})
    with pytest.raises(ClusterFileError, match="must be a dict"):
        clusterfile.load(write(tmp_path, "engines = ['a', 'b']\n", "e.py"))
    with pytest.raises(ClusterFileError, match="is empty"):
        clusterfile.check_engines({})


def test_unreadable_files(tmp_path):
    with pytest.raises(ClusterFileError, match=r"nothing\.py does not exist"):
        clusterfile.load(tmp_path / "nothing.py")
    path = tmp_path / "binary.py"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ClusterFileError, match="cannot be read"):
        clusterfile.load(path)


def test_check_engines_keeps_good_hosts():
    good = {"node1": 1, "me@node-2.lab.example": 3, "10.213.4.2": 2, "u_1@[::1]": 1}
    assert clusterfile.check_engines(good) == good
