"""The fake Rule's own count (GET /_fake/stats), which the benchmarks read instead of every recorded body."""

import requests


def test_stats_count_calls_by_answer_and_kind_and_the_subscribers_rule_accepted(fake_rule):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {fake_rule.api_key}"
    url = fake_rule.url

    def post(emails: list[str], tags: list[str]) -> int:
        subscribers = [{"email": e} for e in emails]
        payload = {"update_on_duplicate": True, "tags": tags, "subscribers": subscribers}
        return session.post(url + "/subscribers", json=payload, timeout=5).status_code

    assert post(["a@example.com", "b@example.com"], ["OrderShipped"]) == 200
    assert post(["A@example.com"], ["OrderShipped"]) == 200  # the same subscriber and tags again: a duplicate
    assert post(["a@example.com"], ["Newsletter"]) == 200  # other tags: not a duplicate
    fake_rule.fail(503)
    assert post(["c@example.com"], ["OrderShipped"]) == 503  # refused: not accepted
    answer = session.delete(url + "/subscribers/b%40example.com/tags/OrderShipped?identified_by=email", timeout=5)
    assert answer.status_code == 200

    stats = requests.get(url.replace("/api/v2", "/_fake/stats"), timeout=5).json()

    assert stats["calls"] == 5
    assert stats["statuses"] == {"200": 4, "503": 1}
    assert stats["endpoints"] == {"POST /subscribers": 4, "DELETE /subscribers/{}/tags/{}": 1}
    assert [status for _, status in stats["times"]] == [200, 200, 200, 503, 200]
    assert stats["subscribers_accepted"] == 4
    assert stats["subscribers_distinct"] == 3
