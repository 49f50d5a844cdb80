"""Chat sessions over HTTP: create, list, get, delete, within one workspace; history
sent to the model, capped at 20 messages; both turns stored with sources, model, confidence."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from fwa_api.agents import sessions
from tests.agents.conftest import Api, World
from tests.agents.fake_llm import FakeLLM, Say
from tests.agents.harness import FOREIGN_CASE

pytestmark = pytest.mark.postgres


def test_create_list_get_delete(api: Api) -> None:
    first = api.new_session(title="Provider questions")
    second = api.new_session(case_id="CASE-000001")
    listed = api.request("GET", "/api/agents/sessions").json()["sessions"]
    assert {s["session_id"] for s in listed} == {first, second}
    pinned = next(s for s in listed if s["session_id"] == second)
    assert (pinned["case_id"], pinned["created_by"], pinned["message_count"]) == (
        "CASE-000001",
        "alice",
        0,
    )
    got = api.request("GET", f"/api/agents/sessions/{first}").json()
    assert (got["title"], got["messages"]) == ("Provider questions", [])
    assert api.request("DELETE", f"/api/agents/sessions/{first}").status_code == 204
    assert api.request("GET", f"/api/agents/sessions/{first}").status_code == 404
    assert api.request("DELETE", f"/api/agents/sessions/{first}").status_code == 404


def test_sessions_do_not_cross_workspaces(api: Api) -> None:
    mine = api.new_session()
    theirs = api.request(
        "POST", "/api/agents/sessions", "gina", json={}, params={"workspace": "globex"}
    ).json()["session_id"]
    assert api.request("GET", f"/api/agents/sessions/{theirs}").status_code == 404
    assert api.request("DELETE", f"/api/agents/sessions/{theirs}").status_code == 404
    assert api.chat("hello", session_id=theirs).status_code == 404
    # A token without the workspace does not get in by naming it.
    assert (
        api.request("GET", "/api/agents/sessions", params={"workspace": "globex"}).status_code
        == 404
    )
    listed = api.request("GET", "/api/agents/sessions", "gina", params={"workspace": "globex"})
    assert [s["session_id"] for s in listed.json()["sessions"]] == [theirs]
    assert mine != theirs


def test_a_session_cannot_be_pinned_to_another_workspaces_case(api: Api) -> None:
    response = api.request("POST", "/api/agents/sessions", json={"case_id": FOREIGN_CASE})
    assert response.status_code == 404
    assert response.json()["detail"] == "case not found"
    assert (
        api.request("POST", "/api/agents/sessions", json={"case_id": "CASE-999999"}).json()[
            "detail"
        ]
        == "case not found"
    )


def test_only_the_creator_or_an_admin_deletes(api: Api) -> None:
    session = api.new_session("alice")
    assert api.request("DELETE", f"/api/agents/sessions/{session}", "vera").status_code == 403
    assert api.request("DELETE", f"/api/agents/sessions/{session}", "root").status_code == 204


def test_the_team_reads_a_session_but_only_its_creator_continues_it(api: Api, llm: FakeLLM) -> None:
    session = api.new_session("alice")
    llm.script(Say("Nothing flagged yet."))
    assert api.chat("Anything on P1?", session_id=session).status_code == 200
    # vera (a viewer of the same workspace) reads it, but may not write in alice's name.
    shared = api.request("GET", f"/api/agents/sessions/{session}", "vera").json()
    assert [m["role"] for m in shared["messages"]] == ["user", "assistant"]
    refused = api.chat("And P2?", "vera", session_id=session)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "only the session's creator may continue it"
    assert len(api.request("GET", f"/api/agents/sessions/{session}").json()["messages"]) == 2
    assert len(llm.records) == 1  # refused before the model was asked


def test_bad_ids_and_missing_token(api: Api) -> None:
    assert api.request("GET", "/api/agents/sessions/not-a-uuid").status_code == 422
    assert api.http.get("/api/agents/sessions", params={"workspace": "acme"}).status_code == 401


def test_a_multi_turn_session_keeps_its_history(api: Api, llm: FakeLLM) -> None:
    session = api.new_session()
    llm.script(Say(["Hello, ", "Alice."]), Say(["You asked about ", "greetings."]))
    first = api.chat("Hi, I am Alice and I review upcoding", session_id=session)
    assert first.status_code == 200, first.text
    second = api.chat("What did I just say?", session_id=session).json()
    assert second["response"] == "You asked about greetings."
    sent = llm.chat_requests[1]["messages"]
    assert [(m["role"], m["content"]) for m in sent[1:]] == [
        ("user", "Hi, I am Alice and I review upcoding"),
        ("assistant", "Hello, Alice."),
        ("user", "What did I just say?"),
    ]
    assert sent[0]["role"] == "system" and '"acme"' in sent[0]["content"]
    stored = api.request("GET", f"/api/agents/sessions/{session}").json()
    assert stored["title"] == "Hi, I am Alice and I review upcoding"
    assert [(m["role"], m["model_used"], m["confidence"]) for m in stored["messages"]] == [
        ("user", None, None),
        ("assistant", "llama3.1:8b", "low"),
        ("user", None, None),
        ("assistant", "llama3.1:8b", "low"),
    ]


def test_history_is_capped_at_twenty_messages(
    api: Api, llm: FakeLLM, pg_engine: Engine, world: World
) -> None:
    session = api.new_session()
    for n in range(15):  # 30 stored messages
        sessions.record_turn(
            pg_engine,
            world.acme,
            session,
            sessions.Turn(f"question {n}", f"answer {n}", [], "llama3.1:8b", "low"),
        )
    llm.script(Say(["ok"]))
    assert api.chat("and now?", session_id=session).status_code == 200
    sent = llm.chat_requests[0]["messages"]
    history = sent[1:-1]
    assert len(history) == 20
    assert history[0] == {"role": "user", "content": "question 5"}
    assert history[-1] == {"role": "assistant", "content": "answer 14"}
    assert sent[-1] == {"role": "user", "content": "and now?"}


def test_fast_path_turns_are_stored_with_sources(api: Api) -> None:
    session = api.new_session()
    reply = api.chat("top critical cases", session_id=session).json()
    assert (reply["confidence"], reply["model_used"]) == ("high", "fast-path")
    stored = api.request("GET", f"/api/agents/sessions/{session}").json()["messages"]
    assert stored[1]["sources_cited"] == [{"type": "case", "id": "CASE-000001"}]
    assert stored[1]["content"] == reply["response"]
    assert "[CASE-000001](/cases/CASE-000001)" in reply["response"]


def test_a_pinned_case_goes_in_front_of_the_model(api: Api, llm: FakeLLM) -> None:
    session = api.new_session(case_id="CASE-000001")
    llm.script(Say(["It is about CASE-000001."]))
    reply = api.chat("what should I look at first?", session_id=session).json()
    system = llm.chat_requests[0]["messages"][0]["content"]
    assert "This conversation is about case CASE-000001." in system
    assert '"subject_id":"1234567893"' in system
    assert reply["confidence"] == "medium"
    assert reply["response"] == "It is about [CASE-000001](/cases/CASE-000001)."


def test_title_from_a_long_first_message() -> None:
    title = sessions.title_from(
        "Why  are\nthere so many E/M level 5 visits billed by this provider in March, and who else?"
    )
    assert title == "Why are there so many E/M level 5 visits billed by this…"
    assert len(title) <= sessions.TITLE_CHARS + 1
