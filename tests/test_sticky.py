"""The one sticky-comment algorithm, against an in-memory thread (the drivers are tested against the
fake forges in test_github_driver.py / test_gitlab_driver.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cml_bot.forges.sticky import Comment, CommentGone, CommentMode, EditRefused, is_ours, upsert
from cml_bot.forges.sticky import Remembering as RememberingThread

MARKER = "<!-- cml-bot report (id: default) -->"
ME = "cml-bot-user"


def report(text: str) -> str:
    return f"{MARKER}\n## Report\n{text}\n"


class Thread:
    def __init__(self, identity: str | None = ME, author: str = ME) -> None:
        self._identity = identity
        self.author = author  # who the forge says wrote what we create
        self.items: list[Comment] = []
        self.next_id = 100
        self.lose_next_create = False  # the create lands, its answer is lost
        self.edits = 0
        self.deletes = 0

    def add(self, body: str, author: str) -> Comment:
        self.next_id += 1
        comment = Comment(str(self.next_id), body, author, f"https://forge/c/{self.next_id}")
        self.items.append(comment)
        return comment

    def identity(self) -> str | None:
        return self._identity

    def comments(self) -> list[Comment]:
        return list(self.items)

    def create(self, body: str, confirm: Callable[[], Comment | None]) -> Comment:
        made = self.add(body, self.author)
        if self.lose_next_create:
            self.lose_next_create = False
            found = confirm()
            assert found is not None
            return found
        return made

    def edit(self, comment: Comment, body: str) -> Comment:
        self.edits += 1
        index = next(i for i, c in enumerate(self.items) if c.id == comment.id)
        self.items[index] = Comment(comment.id, body, comment.author, comment.url)
        return self.items[index]

    def delete(self, comment: Comment) -> None:
        self.deletes += 1
        self.items = [c for c in self.items if c.id != comment.id]


def test_first_post_then_update_in_place() -> None:
    thread = Thread()
    first = upsert(thread, report("one"), MARKER, CommentMode.UPDATE)
    second = upsert(thread, report("two"), MARKER, CommentMode.UPDATE)
    assert first.created and not second.created and first.comment_url == second.comment_url
    assert [c.body for c in thread.items] == [report("two")]


def test_an_unchanged_body_is_not_written_again() -> None:
    thread = Thread()
    upsert(thread, report("same"), MARKER, CommentMode.UPDATE)
    upsert(thread, report("same"), MARKER, CommentMode.UPDATE)
    assert thread.edits == 0


def test_only_the_exact_first_line_by_our_identity_is_ours() -> None:
    assert is_ours(Comment("1", report("x"), ME), MARKER, ME)
    assert not is_ours(Comment("1", f"> {MARKER}\nquoted", ME), MARKER, ME)
    assert not is_ours(Comment("1", f"see this:\n{MARKER}\n", ME), MARKER, ME)
    assert not is_ours(Comment("1", report("x"), "other-bot[bot]"), MARKER, ME)
    assert not is_ours(Comment("1", report("x"), ME), MARKER, None)
    assert not is_ours(Comment("1", MARKER.replace("default", "other") + "\n", ME), MARKER, ME)


def test_other_bots_humans_and_quotes_are_never_touched() -> None:
    thread = Thread()
    bot = thread.add(report("another bot pasted our report"), "other-bot[bot]")
    human = thread.add(f"> {MARKER}\n> quoted by a human", "alice")
    actions = thread.add(report("github-actions quoting it"), "github-actions[bot]")
    upsert(thread, report("ours"), MARKER, CommentMode.UPDATE)
    assert thread.items[:3] == [bot, human, actions]
    assert thread.items[3].author == ME and thread.items[3].body == report("ours")


def test_recreate_deletes_ours_and_posts_at_the_bottom() -> None:
    thread = Thread()
    upsert(thread, report("old"), MARKER, CommentMode.UPDATE)
    thread.add("a human reply", "alice")
    upsert(thread, report("new"), MARKER, CommentMode.RECREATE)
    assert [c.author for c in thread.items] == ["alice", ME]
    assert thread.items[-1].body == report("new")


def test_new_always_adds() -> None:
    thread = Thread()
    for text in ("a", "b", "c"):
        assert upsert(thread, report(text), MARKER, CommentMode.NEW).created
    assert len(thread.items) == 3


def test_duplicates_of_ours_collapse_into_the_oldest_on_update() -> None:
    thread = Thread()
    oldest = thread.add(report("1"), ME)
    thread.add(report("2"), ME)
    thread.add(report("3"), ME)
    result = upsert(thread, report("4"), MARKER, CommentMode.UPDATE)
    assert [c.id for c in thread.items] == [oldest.id] and thread.items[0].body == report("4")
    assert result.comment_url == oldest.url


def test_a_lost_create_answer_is_adopted_not_posted_twice() -> None:
    thread = Thread()
    thread.lose_next_create = True
    result = upsert(thread, report("x"), MARKER, CommentMode.UPDATE)
    assert len(thread.items) == 1 and result.created


def test_racing_first_posts_settle_on_the_oldest_with_the_newest_body() -> None:
    thread = Thread()
    racer = Thread.create

    def create_after_a_racer(self: Thread, body: str, confirm: Callable[[], Comment | None]) -> Comment:
        self.add(report("the other run's report"), ME)  # the other run posted between our listing and our post
        return racer(self, body, confirm)

    thread.create = create_after_a_racer.__get__(thread)  # type: ignore[method-assign]
    result = upsert(thread, report("mine"), MARKER, CommentMode.UPDATE)
    assert len(thread.items) == 1
    assert thread.items[0].body == report("mine")  # the newest body, on the oldest comment
    assert not result.created


def test_unknown_identity_learns_it_from_the_created_comment_and_recreates() -> None:
    thread = Thread(identity=None, author="some-app[bot]")
    older = thread.add(report("earlier run"), "some-app[bot]")
    stranger = thread.add(report("not ours"), "other[bot]")
    upsert(thread, report("now"), MARKER, CommentMode.UPDATE)
    assert older not in thread.items and stranger in thread.items
    assert [c.body for c in thread.items if c.author == "some-app[bot]"] == [report("now")]


def test_the_body_must_start_with_the_marker() -> None:
    with pytest.raises(ValueError):
        upsert(Thread(), f"text\n{MARKER}\n", MARKER, CommentMode.UPDATE)


# -- a thread that remembers its comment (sticky.Remembering) --------------------------------------


class Remembering(Thread):
    """Remembers a comment id per marker, as a driver would in a place it reads anyway. ``named``
    may be set to anything (a remembered id is hostile input); ``recall`` returns that comment as
    the forge shows it now, or None when it is gone."""

    def __init__(self, identity: str | None = ME, author: str = ME) -> None:
        super().__init__(identity, author)
        self.named: dict[str, str] = {}
        self.listings = 0
        self.recalls = 0
        self.remembered: list[str | None] = []  # what each remember() call named
        self.vanish_before_edit: set[str] = set()  # deleted between recall and edit
        self.refuse_edits = False

    def comments(self) -> list[Comment]:
        self.listings += 1
        return super().comments()

    def recall(self, marker: str) -> Comment | None:
        self.recalls += 1
        cid = self.named.get(marker)
        return next((c for c in self.items if c.id == cid), None)

    def remember(self, marker: str, comment: Comment | None) -> None:
        self.remembered.append(comment.id if comment is not None else None)
        if comment is None:
            self.named.pop(marker, None)
        else:
            self.named[marker] = comment.id

    def edit(self, comment: Comment, body: str) -> Comment:
        if self.refuse_edits:
            raise EditRefused("may not edit our comment")
        if comment.id in self.vanish_before_edit:
            self.items = [c for c in self.items if c.id != comment.id]
            raise CommentGone(f"comment {comment.id} is gone")
        return super().edit(comment, body)


def test_thread_doubles_are_what_upsert_checks_for() -> None:
    assert isinstance(Remembering(), RememberingThread) and not isinstance(Thread(), RememberingThread)


def test_an_update_edits_the_remembered_comment_without_listing() -> None:
    thread = Remembering()
    first = upsert(thread, report("one"), MARKER, CommentMode.UPDATE)
    assert first.created and thread.remembered == [thread.items[0].id]  # the settled survivor
    listings = thread.listings
    second = upsert(thread, report("two"), MARKER, CommentMode.UPDATE)
    assert not second.created and second.comment_url == first.comment_url
    assert thread.listings == listings and [c.body for c in thread.items] == [report("two")]
    assert thread.remembered == [thread.items[0].id]  # not told again: nothing changed


@pytest.mark.parametrize(
    "body, author",
    [
        ("LGTM", "alice"),  # no marker
        (f"> {MARKER}\n> quoted", "alice"),  # the marker, not the first line
        (report("pasted"), "alice"),  # exactly our first line, by a human
        (report("another bot's"), "other-bot[bot]"),
        (report("x").replace("default", "other"), ME),  # ours, another report's marker
    ],
)
def test_a_remembered_comment_that_is_not_ours_is_never_edited(body: str, author: str) -> None:
    thread = Remembering()
    ours = thread.add(report("old"), ME)
    hostile = thread.add(body, author)
    thread.named[MARKER] = hostile.id
    result = upsert(thread, report("new"), MARKER, CommentMode.UPDATE)
    assert hostile in thread.items  # untouched
    assert thread.listings == 1 and not result.created
    assert [c.body for c in thread.items if c.id == ours.id] == [report("new")]
    assert thread.named[MARKER] == ours.id  # the listing's survivor is remembered instead


def test_a_remembered_comment_gone_before_the_edit_falls_back_to_the_listing() -> None:
    thread = Remembering()
    upsert(thread, report("one"), MARKER, CommentMode.UPDATE)
    [old] = thread.items
    thread.vanish_before_edit = {old.id}
    result = upsert(thread, report("two"), MARKER, CommentMode.UPDATE)
    assert result.created and [c.body for c in thread.items] == [report("two")]
    assert thread.named[MARKER] == thread.items[0].id != old.id


def test_a_remembered_comment_gone_already_falls_back_to_the_listing() -> None:
    thread = Remembering()
    upsert(thread, report("one"), MARKER, CommentMode.UPDATE)
    thread.items.clear()  # deleted by someone
    assert upsert(thread, report("two"), MARKER, CommentMode.UPDATE).created
    assert len(thread.items) == 1 and thread.named[MARKER] == thread.items[0].id


def test_refused_edit_of_the_remembered_comment_is_an_error_not_a_new_comment() -> None:
    thread = Remembering()
    upsert(thread, report("one"), MARKER, CommentMode.UPDATE)
    thread.refuse_edits = True
    with pytest.raises(EditRefused):
        upsert(thread, report("two"), MARKER, CommentMode.UPDATE)
    assert len(thread.items) == 1


def test_unknown_identity_never_trusts_a_remembered_comment() -> None:
    thread = Remembering(identity=None, author="app[bot]")
    thread.named[MARKER] = thread.add(report("old"), "app[bot]").id
    upsert(thread, report("new"), MARKER, CommentMode.UPDATE)
    assert thread.recalls == 0 and thread.listings >= 1
    assert [c.body for c in thread.items] == [report("new")]


def test_the_survivor_is_remembered_after_each_mode() -> None:
    thread = Remembering()
    oldest = thread.add(report("1"), ME)
    thread.add(report("2"), ME)
    upsert(thread, report("update"), MARKER, CommentMode.UPDATE)  # listed: duplicates collapse
    assert thread.remembered == [oldest.id]
    upsert(thread, report("recreate"), MARKER, CommentMode.RECREATE)
    [recreated] = thread.items
    assert thread.remembered[-1] == recreated.id != oldest.id
    upsert(thread, report("new"), MARKER, CommentMode.NEW)
    assert thread.remembered[-1] is None  # forgotten: the next update lists and collapses
    upsert(thread, report("update again"), MARKER, CommentMode.UPDATE)
    assert [c.id for c in thread.items] == [recreated.id] and thread.remembered[-1] == recreated.id


def test_racing_first_posts_remember_the_same_survivor() -> None:
    thread = Remembering()
    racer = Remembering.create

    def create_after_a_racer(self: Remembering, body: str, confirm: Callable[[], Comment | None]) -> Comment:
        self.add(report("the other run's report"), ME)
        return racer(self, body, confirm)

    thread.create = create_after_a_racer.__get__(thread)  # type: ignore[method-assign]
    upsert(thread, report("mine"), MARKER, CommentMode.UPDATE)
    [survivor] = thread.items
    assert thread.remembered == [survivor.id]  # the oldest: what the other run's settle also keeps
