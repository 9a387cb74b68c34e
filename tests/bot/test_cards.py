"""Rendering: cards and /list pages, escaped, within Telegram's limits."""
# ruff: noqa: RUF001 - Russian text is Russian, not look-alike Latin

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.callbacks import ListPage, StatusButton
from bot.cards import (
    LIST_PAGE_SIZE,
    TEXT_LIMIT,
    compact_ids,
    render_card,
    render_list_page,
    render_reminder,
    render_resolved_notice,
    render_resolved_summary,
    render_summary,
    visible_length,
)
from storage.rules import DESCRIPTION_MAX_LENGTH, SOURCE_MAX_LENGTH, Status
from tests.bot.conftest import NOON, make_incident
from tests.telegram_stub import parse_html, strip_text

pytestmark = pytest.mark.usefixtures("english")


def visible(html_text: str) -> str:
    """What Telegram shows for the HTML, parsed the strict way the stand-in does."""
    return strip_text(parse_html(html_text, strict_ampersand=True)).text


def test_render_card_shows_title_description_and_buttons() -> None:
    card = render_card(make_incident())

    assert visible(card.text) == (
        "🔴 Incident #17 · open · monitoring\nScooter #42 is not responding\n\nReported by Alice"
    )
    assert card.reply_markup is not None
    buttons = card.reply_markup.inline_keyboard[0]
    assert [button.text for button in buttons] == ["🛠 In progress", "✅ Resolved", "🔒 Close"]
    assert [StatusButton.unpack(str(b.callback_data)).target for b in buttons] == [
        Status.IN_PROGRESS,
        Status.RESOLVED,
        Status.CLOSED,
    ]


def test_render_card_names_who_changed_status() -> None:
    card = render_card(make_incident(status=Status.IN_PROGRESS, updated_by="Bob"))

    assert visible(card.text).startswith("🟡 Incident #17 · in progress · monitoring")
    assert visible(card.text).endswith("Reported by Alice\nStatus set by Bob")


def test_render_card_has_no_buttons_when_closed() -> None:
    keyboard = render_card(make_incident(status=Status.CLOSED)).reply_markup
    assert [[button.text for button in row] for row in keyboard.inline_keyboard] == [
        ["📜 History"]
    ]


def test_render_card_shows_markup_characters_exactly() -> None:
    written = "<script>alert(1)</script> & &amp; * _ [x](y) <b>not bold</b>"
    card = render_card(make_incident(description=written, created_by="<Eve & co>"))

    assert visible(card.text) == (
        f"🔴 Incident #17 · open · monitoring\n{written}\n\nReported by <Eve & co>"
    )


@pytest.mark.parametrize(
    "description",
    [
        "x" * DESCRIPTION_MAX_LENGTH,
        "&" * DESCRIPTION_MAX_LENGTH,
        "<" * DESCRIPTION_MAX_LENGTH,
        "😀" * (DESCRIPTION_MAX_LENGTH // 2),
        ("line\n" * 1000)[:DESCRIPTION_MAX_LENGTH],
    ],
    ids=["plain", "ampersands", "angle-brackets", "emoji", "lines"],
)
def test_render_card_cuts_long_description_to_fit(description: str) -> None:
    incident = make_incident(
        description=description,
        source="s" * SOURCE_MAX_LENGTH,
        status=Status.RESOLVED,
        created_by="A" * 128,
        updated_by="B" * 128,
    )

    shown = visible(render_card(incident).text)

    assert visible_length(shown) <= TEXT_LIMIT
    assert "The description is cut to fit Telegram's message limit." in shown
    assert shown.endswith("Status set by " + "B" * 128)


def test_render_card_keeps_description_that_fits_whole() -> None:
    description = "y" * 3000

    shown = visible(render_card(make_incident(description=description)).text)

    assert description in shown
    assert "cut" not in shown


def test_render_card_in_russian(russian: None) -> None:
    card = render_card(make_incident(status=Status.RESOLVED, updated_by="Иван"))

    assert visible(card.text).startswith("🟢 Инцидент #17 · решён · monitoring")
    assert card.reply_markup is not None
    labels = [button.text for button in card.reply_markup.inline_keyboard[0]]
    assert labels == ["🛠 В работу", "🔒 Закрыть"]


def test_render_list_page_shows_one_line_per_incident() -> None:
    incidents = [
        make_incident(id=18, description="Second\nline two", created_at=NOON),
        make_incident(
            id=17,
            source="operator",
            status=Status.IN_PROGRESS,
            created_at=NOON - timedelta(days=2),
        ),
    ]

    page = render_list_page(incidents, total=2, status=None, page=0, now=NOON)

    assert visible(page.text).split("\n") == [
        "Incidents · 1-2 of 2, newest first, times in UTC",
        "#18 · open · monitoring · 14:02 · Second line two",
        "#17 · in progress · operator · 21.11 14:02 · Scooter #42 is not responding",
    ]
    assert page.reply_markup is None


def test_render_list_page_says_no_incidents_when_empty() -> None:
    assert visible(render_list_page([], total=0, status=None, page=0, now=NOON).text) == (
        "No incidents."
    )
    assert visible(render_list_page([], total=0, status=Status.CLOSED, page=0, now=NOON).text) == (
        "No incidents with status closed."
    )


def test_render_list_page_offers_prev_and_next_in_the_middle() -> None:
    incidents = [make_incident(id=number) for number in range(40, 20, -1)]

    page = render_list_page(incidents, total=65, status=Status.OPEN, page=1, now=NOON)

    assert page.reply_markup is not None
    buttons = page.reply_markup.inline_keyboard[0]
    assert [button.text for button in buttons] == ["◀ Prev", "Next ▶"]
    assert [ListPage.unpack(str(b.callback_data)).page for b in buttons] == [0, 2]
    assert visible(page.text).startswith("Incidents · open · 21-40 of 65")


def test_render_list_page_fits_limit_with_longest_entries() -> None:
    incidents = [
        make_incident(
            id=10**18 + number,
            source="s" * SOURCE_MAX_LENGTH,
            status=Status.IN_PROGRESS,
            description="&<" * 2000,
            created_at=NOON.replace(year=2020),
        )
        for number in range(LIST_PAGE_SIZE)
    ]

    page = render_list_page(incidents, total=10**6, status=None, page=0, now=NOON)

    lines = visible(page.text).split("\n")
    assert len(lines) == LIST_PAGE_SIZE + 1
    assert all(line.endswith("…") for line in lines[1:])
    assert visible_length(visible(page.text)) <= TEXT_LIMIT


def test_compact_ids_shows_runs_as_ranges() -> None:
    assert compact_ids(range(101, 138)) == "#101–#137"
    assert compact_ids([15, 1, 2, 3, 5, 7, 8, 12, 13, 14]) == "#1–#3, #5, #7, #8, #12–#15"
    assert compact_ids([4]) == "#4"


def test_compact_ids_cuts_long_list_and_counts_the_rest() -> None:
    text = compact_ids(range(1, 2001, 2), limit=40)

    assert text == "#1, #3, #5, #7, #9, #11, #13, #15, #17, … (+991)"


def test_render_summary_names_ids_and_how_to_list_them() -> None:
    summary = render_summary(list(range(101, 138)))

    assert visible(summary.text) == (
        "Registered 37 incidents: #101–#137.\n"
        "Too many at once for a card each: /list open shows them,"
        " /status <id> shows one incident's card."
    )
    assert summary.reply_markup is None


def test_render_summary_of_scattered_thousands_fits_limit() -> None:
    summary = render_summary([10**12 + 3 * number for number in range(5000)])

    text = visible(summary.text)
    assert visible_length(text) <= TEXT_LIMIT
    assert text.startswith("Registered 5000 incidents: #1000000000000, #1000000000003")
    assert "… (+" in text


def test_render_summary_in_russian(russian: None) -> None:
    summary = render_summary([1, 2, 3, 9])

    assert visible(summary.text) == (
        "Зарегистрировано инцидентов: 4 — #1–#3, #9.\n"
        "Слишком много сразу, чтобы прислать карточку на каждый: /list open покажет их,"
        " /status <номер> — карточку одного."
    )


def test_render_card_of_an_alert_shows_severity_repeats_and_previous() -> None:
    card = render_card(
        make_incident(
            source="alertmanager",
            created_by="Alertmanager",
            updated_by="Alertmanager",
            severity="critical",
            repeat_count=4,
            last_seen_at=NOON + timedelta(minutes=5),
            previous_id=16,
        )
    )

    assert visible(card.text) == (
        "🔴 Incident #17 · open · alertmanager\nScooter #42 is not responding\n\n"
        "Severity: critical\nRepeats: 4 · last seen 14:07 UTC\nFired again; previous: #16\n"
        "Reported by Alertmanager"
    )


def test_render_card_of_an_alert_seen_once_says_no_repeats() -> None:
    card = render_card(make_incident(repeat_count=0, last_seen_at=NOON, severity=None))

    assert "Repeats" not in visible(card.text)
    assert "Severity" not in visible(card.text)


def test_render_card_of_an_alert_in_russian(russian: None) -> None:
    card = render_card(
        make_incident(
            severity="warning",
            repeat_count=2,
            last_seen_at=NOON + timedelta(days=1),
            previous_id=3,
        )
    )

    assert "Важность: warning" in visible(card.text)
    assert "Повторов: 2 · последний раз 24.11 14:02 UTC" in visible(card.text)
    assert "Сработало снова; предыдущий: #3" in visible(card.text)


def test_render_resolved_notice_replying_to_the_card_or_naming_the_incident() -> None:
    assert visible(render_resolved_notice(17, "Alertmanager", replying=True).text) == (
        "✅ Resolved by Alertmanager"
    )
    assert visible(render_resolved_notice(17, "<zabbix>", replying=False).text) == (
        "✅ Incident #17 resolved by <zabbix>"
    )
    assert visible(render_resolved_summary([3, 4, 5, 9]).text) == (
        "✅ Resolved 4 incidents: #3\u2013#5, #9."
    )


def test_render_resolved_notice_in_russian(russian: None) -> None:
    assert visible(render_resolved_notice(17, "Alertmanager", replying=True).text) == (
        "✅ Решено: Alertmanager"
    )
    assert visible(render_resolved_notice(17, "Grafana", replying=False).text) == (
        "✅ Инцидент #17 решён: Grafana"
    )


def test_a_reminder_is_drawn_from_the_incident_as_it_is_when_sent() -> None:
    now = NOON + timedelta(minutes=75)
    untaken = make_incident(created_at=NOON)
    taken = make_incident(status=Status.IN_PROGRESS, owner_id=42, owner_name="Oleg")
    snoozed = make_incident(snoozed_until=now + timedelta(minutes=5))
    resolved = make_incident(status=Status.RESOLVED)

    reminder = render_reminder(untaken, now, replying=False)

    assert reminder is not None
    assert reminder.text == "⏰ Nobody has taken #17 for 1 h 15 min. Press 🙋 Take on its card."
    nudge = render_reminder(taken, now, replying=True)
    assert nudge is not None
    assert nudge.text.startswith('⏰ <a href="tg://user?id=42">Oleg</a>, this incident has')
    # Taken (for an untaken reminder), snoozed or resolved since: nothing to say.
    assert render_reminder(snoozed, now, replying=True) is None
    assert render_reminder(resolved, now, replying=True) is None
