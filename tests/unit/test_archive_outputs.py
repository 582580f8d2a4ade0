"""Archive detection from command lines: cached splitting gives the shell's words, bounded."""

from __future__ import annotations

import shlex

from hypothesis import given
from hypothesis import strategies as st

from churnguard.ingest.events import Event, EventKind
from churnguard.profiling import features
from churnguard.profiling.features import archive_outputs


def exec_of(binary: str, args: str) -> Event:
    return Event(time=0.0, kind=EventKind.PROCESS_EXEC, format="test", binary=binary, args=args)


def words(args: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(args))
    except ValueError:
        return tuple(args.split())


@given(args=st.text(alphabet="ab -c.tgz\"'/\\", max_size=40))
def test_a_command_line_splits_as_the_shell_splits_it_cached_or_not(args: str) -> None:
    assert features._argv(args) == words(args)
    assert features._argv(args) == words(args)  # the second look comes from the cache


def test_tar_create_names_its_archive_and_extract_does_not() -> None:
    assert archive_outputs(exec_of("/bin/tar", "-czf /tmp/out.tgz /data")) == (
        True,
        ["/tmp/out.tgz"],
    )
    assert archive_outputs(exec_of("/bin/tar", "-xzf /tmp/in.tgz")) == (False, [])


def test_a_long_command_line_is_split_but_not_kept() -> None:
    before = features._cached_words.cache_info().currsize
    huge = "tar -czf /tmp/out.tgz " + "x" * 10_000
    assert archive_outputs(exec_of("/bin/tar", huge)) == (True, ["/tmp/out.tgz"])
    assert features._cached_words.cache_info().currsize == before
