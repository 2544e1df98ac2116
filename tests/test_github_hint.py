"""The comment named on the assets branch (GitHub's :class:`cml_bot.forges.sticky.Remembering`):
the fast path of an update, and every way a hostile or stale name falls back to the full listing,
against the fake GitHub (OpenAPI-checked) through the real driver and the one sticky algorithm."""

from __future__ import annotations

import re

import pytest
from fake_github import FakeGitHub, fake_github, github_env

from cml_bot.context import detect
from cml_bot.forges.github import GitHub, github_forge
from cml_bot.forges.sticky import CommentMode, Publication, upsert
from cml_bot.model import Image, Verdict

__all__ = ["fake_github"]  # the fixture, imported for pytest

MARKER = "<!-- cml-bot report (id: default) -->"
ME = "cml-bot-user"
APP_TOKEN = "ghs_FAKE0APP0INSTALLATION0token0secret0"
ASSETS = "refs/heads/cml-bot-assets"
PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 100
REPO = "/repos/Codertocat/Hello-World"


def body(text: str) -> str:
    return f"{MARKER}\n## cml-bot\n{text}\n"


def forge_for(fake: FakeGitHub, **env: str) -> GitHub:
    environ = github_env(fake, "pull_request.opened", **env)
    return github_forge(detect(environ), environ, sleep=lambda _: None)


def run(
    fake: FakeGitHub, text: str, mode: CommentMode = CommentMode.UPDATE, *, plot: bool = True, **env: str
) -> Publication:
    """What `cml-bot report` does on PR #2 (delivery.post): the status first, the plot (which reads
    the assets branch), then the sticky comment."""
    forge = forge_for(fake, **env)
    change = forge.change()
    assert change is not None
    forge.set_status(Verdict.PASS, "ok", None)
    if plot:
        forge.upload_images(change, [Image("plot.png", PNG)])
    return upsert(forge.thread(change), body(text), MARKER, mode)


def hints(fake: FakeGitHub) -> dict[str, bytes]:
    if ASSETS not in fake.refs:
        return {}
    files = fake.commit_files("cml-bot-assets")
    return {path: data for path, data in files.items() if re.fullmatch(r"pr-2/\.comment-[0-9a-f]{12}-[0-9]+", path)}


def the_hint(fake: FakeGitHub) -> tuple[str, str]:
    """(path, comment id) of the one hint file."""
    [path] = hints(fake)
    match = re.fullmatch(r"pr-2/\.comment-[0-9a-f]{12}-([0-9]+)", path)
    assert match, path
    return path, match.group(1)


def name_comment(fake: FakeGitHub, comment_id: str | int, login: str = ME) -> None:
    """Rewrite the hint as anyone who may push to the assets branch could: naming ``comment_id``
    and recording ``login`` as its author."""
    path, _ = the_hint(fake)
    files = {p: d for p, d in fake.commit_files("cml-bot-assets").items() if "/.comment-" not in p}
    files[re.sub(r"-[0-9]+$", f"-{comment_id}", path)] = f"cml-bot comment {comment_id} by {login}\n".encode()
    fake.refs.pop(ASSETS)
    fake.push_commit("cml-bot-assets", files, "a hand-made hint")


def ours(fake: FakeGitHub) -> list[tuple[int, str]]:
    return [(c["id"], c["body"]) for c in fake.comments_on(2) if c["login"] == ME and c["body"].startswith(MARKER)]


def comment_requests(fake: FakeGitHub, since: int) -> list[tuple[str, str]]:
    return [(m, p.split("?")[0]) for m, p, _ in fake.log[since:] if "/comments" in p or p == "/user"]


def listed(fake: FakeGitHub, since: int) -> bool:
    return any(re.search(r"/issues/2/comments$", p) for m, p in comment_requests(fake, since) if m == "GET")


# -- the fast path ---------------------------------------------------------------------------


def test_first_post_names_the_comment_and_its_author_beside_the_plot(fake_github: FakeGitHub) -> None:
    publication = run(fake_github, "first")
    [(cid, _)] = ours(fake_github)
    path, named = the_hint(fake_github)
    assert publication.created and named == str(cid)
    assert hints(fake_github)[path] == f"cml-bot comment {cid} by {ME}\n".encode()
    assert fake_github.requests("GET", "^/user$") == []  # who we are: the status's creator


def test_update_among_300_comments_fetches_and_edits_the_named_comment(fake_github: FakeGitHub) -> None:
    run(fake_github, "first")
    [(cid, _)] = ours(fake_github)
    for i in range(300):
        fake_github.add_comment(2, f"review remark {i}", login=f"reviewer{i % 7}")
    assets = fake_github.refs[ASSETS]
    start = len(fake_github.log)

    publication = run(fake_github, "second")

    assert publication == Publication(f"https://github.com/Codertocat/Hello-World/pull/2#issuecomment-{cid}", False)
    assert ours(fake_github) == [(cid, body("second"))]
    tree = fake_github.commits[assets]["tree"]
    assert [(m, p.split("?")[0]) for m, p, _ in fake_github.log[start:]] == [
        ("POST", f"{REPO}/statuses/ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
        ("GET", f"{REPO}/branches/cml-bot-assets"),
        ("GET", f"{REPO}/git/trees/{tree}"),
        ("GET", f"{REPO}/issues/comments/{cid}"),
        ("PATCH", f"{REPO}/issues/comments/{cid}"),
    ]
    assert fake_github.refs[ASSETS] == assets  # the name is not written again


def test_an_unchanged_report_is_not_written_again(fake_github: FakeGitHub) -> None:
    run(fake_github, "same")
    start = len(fake_github.log)
    assert run(fake_github, "same").created is False
    [(cid, _)] = ours(fake_github)
    assert comment_requests(fake_github, start) == [("GET", f"{REPO}/issues/comments/{cid}")]


def test_a_github_app_token_takes_the_fast_path_without_get_user(fake_github: FakeGitHub) -> None:
    fake_github.add_token(APP_TOKEN, kind="app", app_slug="my-app")
    run(fake_github, "one", CML_BOT_TOKEN=APP_TOKEN)
    start = len(fake_github.log)
    assert run(fake_github, "two", CML_BOT_TOKEN=APP_TOKEN).created is False
    [comment] = fake_github.comments_on(2)
    assert comment["login"] == "my-app[bot]" and comment["body"] == body("two")
    assert comment_requests(fake_github, start) == [
        ("GET", f"{REPO}/issues/comments/{comment['id']}"),
        ("PATCH", f"{REPO}/issues/comments/{comment['id']}"),
    ]
    assert fake_github.requests("GET", "^/user$") == []


def test_a_run_without_plots_neither_reads_nor_writes_the_name(fake_github: FakeGitHub) -> None:
    run(fake_github, "first", plot=False)
    assert ASSETS not in fake_github.refs  # no branch made just for the name
    start = len(fake_github.log)
    run(fake_github, "second", plot=False)
    assert listed(fake_github, start) and len(ours(fake_github)) == 1


# -- a name that does not check out: the listing decides, nothing not ours is edited ------------


def assert_listed_then_one_comment(fake: FakeGitHub, start: int, text: str) -> int:
    """The listing decided; one comment of ours with ``text``, and the name points at it again."""
    assert listed(fake, start)
    [(cid, got)] = ours(fake)
    assert got == body(text)
    path, named = the_hint(fake)
    assert named == str(cid) and hints(fake)[path] == f"cml-bot comment {cid} by {ME}\n".encode()
    return cid


def test_a_named_comment_deleted_since_falls_back_and_posts_anew(fake_github: FakeGitHub) -> None:
    run(fake_github, "first")
    [(old, _)] = ours(fake_github)
    del fake_github.comments[old]  # someone deleted our comment
    start = len(fake_github.log)
    publication = run(fake_github, "second")
    assert publication.created is True
    assert fake_github.requests("GET", f"/issues/comments/{old}$") == [("GET", f"{REPO}/issues/comments/{old}", 404)]
    assert assert_listed_then_one_comment(fake_github, start, "second") != old


def test_a_named_comment_deleted_between_fetch_and_edit_falls_back(fake_github: FakeGitHub) -> None:
    run(fake_github, "first")
    [(old, _)] = ours(fake_github)

    def someone_deletes_it(fake: FakeGitHub) -> None:
        del fake.comments[old]

    fake_github.fail("PATCH", f"/issues/comments/{old}$", "before", callback=someone_deletes_it)
    start = len(fake_github.log)
    assert run(fake_github, "second").created is True  # the edit's 404 is CommentGone: listed, posted anew
    assert [s for _, _, s in fake_github.requests("PATCH", f"/issues/comments/{old}$")] == [404]
    assert assert_listed_then_one_comment(fake_github, start, "second") != old


HOSTILE = [
    "a human's remark",  # no marker at all, the hint records its author
    "a quoted marker",  # the marker, not as the first line
    "a human's paste recorded as theirs",  # exactly our first line, by someone else, hint records them
    "a human's paste recorded as ours",  # exactly our first line, the hint claims we wrote it
    "another bot's report",  # another app posting the same marker
    "our comment on another pull request",
]


@pytest.mark.parametrize("case", HOSTILE)
def test_a_name_for_a_comment_not_ours_here_is_never_edited(fake_github: FakeGitHub, case: str) -> None:
    run(fake_github, "first")
    [(cid, _)] = ours(fake_github)
    if case == "a human's remark":
        target, login = fake_github.add_comment(2, "LGTM", login="octocat"), "octocat"
    elif case == "a quoted marker":
        target, login = fake_github.add_comment(2, f"> {MARKER}\nwhy?", login="octocat"), "octocat"
    elif case == "a human's paste recorded as theirs":
        target, login = fake_github.add_comment(2, body("pasted"), login="octocat"), "octocat"
    elif case == "a human's paste recorded as ours":
        target, login = fake_github.add_comment(2, body("pasted"), login="octocat"), ME
    elif case == "another bot's report":
        target = fake_github.add_comment(2, body("theirs"), login="other-app[bot]", type="Bot")
        login = "other-app[bot]"
    else:
        fake_github.add_pull(3, "b" * 40)
        target, login = fake_github.add_comment(3, body("on PR 3"), login=ME), ME
    name_comment(fake_github, target, login)
    before = fake_github.comments[target]["body"]
    start = len(fake_github.log)

    assert run(fake_github, "second").created is False

    assert fake_github.comments[target]["body"] == before
    assert not fake_github.requests("PATCH", f"/issues/comments/{target}$")
    assert assert_listed_then_one_comment(fake_github, start, "second") == cid


def test_whose_comment_a_name_names_is_decided_by_the_comment_not_by_the_name(fake_github: FakeGitHub) -> None:
    # The file's text is for humans: a record naming another author changes nothing. Our comment
    # (its author is us, its first line the marker, as sticky checks any comment) is edited.
    run(fake_github, "first")
    [(cid, _)] = ours(fake_github)
    name_comment(fake_github, cid, "octocat")
    start = len(fake_github.log)
    assert run(fake_github, "second").created is False
    assert not listed(fake_github, start) and ours(fake_github) == [(cid, body("second"))]


@pytest.mark.parametrize("case", ["two names", "a name that is not a number"])
def test_a_doubtful_name_is_not_fetched(fake_github: FakeGitHub, case: str) -> None:
    run(fake_github, "first")
    [(cid, _)] = ours(fake_github)
    path, _ = the_hint(fake_github)
    files = fake_github.commit_files("cml-bot-assets")
    if case == "two names":
        files[re.sub(r"-[0-9]+$", "-1", path)] = b"cml-bot comment 1 by cml-bot-user\n"
    else:  # the only name is no comment id: not a name at all
        odd = re.sub(r"-[0-9]+$", "-../../user", path)
        files[odd] = files.pop(path)
    fake_github.refs.pop(ASSETS)
    fake_github.push_commit("cml-bot-assets", files, "hand-made names")
    start = len(fake_github.log)
    assert run(fake_github, "second").created is False
    assert not fake_github.requests("GET", r"/issues/comments/")
    assert listed(fake_github, start) and ours(fake_github) == [(cid, body("second"))]
    assert the_hint(fake_github) == (path, str(cid))  # the listing's survivor is named again, alone
    if case != "two names":
        assert odd in fake_github.commit_files("cml-bot-assets")  # not ours to delete: never a name


# -- the name follows the comment ------------------------------------------------------------


def test_recreate_moves_the_name_to_the_new_comment(fake_github: FakeGitHub) -> None:
    run(fake_github, "old")
    [(old, _)] = ours(fake_github)
    assert run(fake_github, "new", CommentMode.RECREATE).created is True
    [(new, text)] = ours(fake_github)
    assert new != old and text == body("new")
    assert the_hint(fake_github)[1] == str(new)  # the old name was deleted, not left beside it
    start = len(fake_github.log)
    run(fake_github, "newer")
    assert comment_requests(fake_github, start) == [
        ("GET", f"{REPO}/issues/comments/{new}"),
        ("PATCH", f"{REPO}/issues/comments/{new}"),
    ]


def test_new_mode_forgets_the_name_so_the_next_update_collapses_the_extra_comments(fake_github: FakeGitHub) -> None:
    run(fake_github, "one")
    [(first, _)] = ours(fake_github)
    run(fake_github, "two", CommentMode.NEW)
    assert hints(fake_github) == {} and len(ours(fake_github)) == 2
    start = len(fake_github.log)
    run(fake_github, "three")
    assert assert_listed_then_one_comment(fake_github, start, "three") == first


def test_racing_first_posts_agree_on_one_comment_and_its_name(fake_github: FakeGitHub) -> None:
    run(fake_github, "setup", CommentMode.NEW)  # the assets branch exists; the NEW comment is removed below
    for cid, _ in ours(fake_github):
        del fake_github.comments[cid]

    def other_run(fake: FakeGitHub) -> None:  # a whole run between our listing and our POST
        run(fake, "other run")

    fake_github.fail("POST", "/issues/2/comments$", "before", callback=other_run)
    publication = run(fake_github, "ours")
    [(survivor, text)] = ours(fake_github)
    assert text == body("ours") and publication.created is False  # the other's (older) comment, our body
    assert the_hint(fake_github)[1] == str(survivor)
    start = len(fake_github.log)
    run(fake_github, "next")
    assert comment_requests(fake_github, start) == [
        ("GET", f"{REPO}/issues/comments/{survivor}"),
        ("PATCH", f"{REPO}/issues/comments/{survivor}"),
    ]


def test_racing_name_writes_agree(fake_github: FakeGitHub) -> None:
    run(fake_github, "setup", CommentMode.NEW)
    for cid, _ in ours(fake_github):
        del fake_github.comments[cid]

    def other_run(fake: FakeGitHub) -> None:  # finds our new comment by listing and names it first
        run(fake, "other run")

    fake_github.fail("PUT", r"/contents/pr-2/\.comment-", "before", callback=other_run)
    run(fake_github, "ours")
    [(survivor, text)] = ours(fake_github)
    assert text == body("other run")  # the other run edited it last
    assert the_hint(fake_github)[1] == str(survivor)
    # theirs landed; ours was refused (no sha for what is now there), re-read, found the same: done
    assert [s for _, _, s in fake_github.requests("PUT", r"/contents/pr-2/\.comment-")] == [201, 422]


def test_a_name_that_cannot_be_written_does_not_fail_the_post(fake_github: FakeGitHub) -> None:
    fake_github.fail("PUT", r"/contents/pr-2/\.comment-", status=403, message="Resource not accessible by integration")
    assert run(fake_github, "x").created is True
    assert len(ours(fake_github)) == 1 and hints(fake_github) == {}
    start = len(fake_github.log)
    run(fake_github, "y")  # lists, then names it
    assert_listed_then_one_comment(fake_github, start, "y")
