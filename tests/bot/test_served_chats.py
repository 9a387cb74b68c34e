"""Which chats the bot serves: ALLOWED_CHAT_IDS, NOTIFY_CHAT_ID and upgraded groups."""

from __future__ import annotations

from bot.filters import ServedChats
from storage.store import ChatScope

GROUP = -4_000_000_001
SUPERGROUP = -1_001_000_000_001
NOTIFY = -1_009_000_000_077


def test_served_chats_are_the_allowed_ones_and_the_notify_chat() -> None:
    served = ServedChats({GROUP}, notify_chat_id=NOTIFY)

    assert (GROUP in served, NOTIFY in served, SUPERGROUP in served) == (True, True, False)
    assert not served.serves_every_chat


def test_served_chats_empty_list_serves_every_chat() -> None:
    served = ServedChats(frozenset(), notify_chat_id=NOTIFY)

    assert served.serves_every_chat
    assert SUPERGROUP in served


def test_follow_serves_supergroup_of_served_group() -> None:
    served = ServedChats({GROUP})

    served.follow(GROUP, SUPERGROUP)

    assert SUPERGROUP in served
    assert served.moved_to(GROUP) == SUPERGROUP
    assert served.moved_to(SUPERGROUP) is None


def test_follow_of_unserved_group_serves_nothing_new() -> None:
    served = ServedChats({NOTIFY}, migrations={GROUP: SUPERGROUP})

    assert SUPERGROUP not in served
    assert served.moved_to(GROUP) == SUPERGROUP


def test_scope_of_a_supergroup_holds_the_groups_that_became_it() -> None:
    older = -4_000_000_000
    served = ServedChats({older, NOTIFY}, migrations={older: GROUP})
    served.follow(GROUP, SUPERGROUP)

    assert served.scope(SUPERGROUP) == ChatScope(frozenset({SUPERGROUP, GROUP, older}))
    assert served.scope(GROUP) == ChatScope(frozenset({GROUP, older}))
    assert served.scope(NOTIFY) == ChatScope(frozenset({NOTIFY}))
