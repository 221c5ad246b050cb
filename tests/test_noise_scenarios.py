"""One scenario per noise-control feature, end to end: samples of tests/data into the inbox, the real
worker on a real SQLite file, a fake clock, and exactly the deliveries that reach the channels, and
when. Each timed scenario restarts the store and worker in the middle of its window or timer: what
was pending is neither lost nor sent twice. Every scenario runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from noise_support import Harness, copy_of, payload

from receiver.noise.state import state_key
from receiver.store import NewSilence, Store

pytestmark = pytest.mark.anyio


async def harness(tmp_path: Path, rules: str, url: str) -> Harness:
    return await Harness(tmp_path, rules, url).open()


CHANNELS = """
channels:
  ops: "log://"
  mail: "log://"
"""


class TestThrottle:
    RULES = (
        CHANNELS
        + """
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
    throttle: {interval: 10m, key: "{{ process }}"}
"""
    )

    async def test_one_message_per_key_and_interval_then_the_count_held_back(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """Faults of one process within 10 minutes send once; the next message says how many were held back."""
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            first = await h.post_at(0, payload("job.faulted.json"))
            second = await h.post_at(60, payload("job.faulted.json"))
            await h.post_at(120, payload("job.faulted.json"))
            await h.post_at(130, payload("events/job.faulted.other-process.json"))
            await h.restart()  # in the middle of the window
            await h.post_at(300, payload("job.faulted.json"))
            await h.post_at(660, payload("job.faulted.json"))
            sent = await h.sent()
            assert [(0, "faults", "Job faulted: InvoiceProcessing on FIN-UNATT-01"),
                    (130, "faults", "Job faulted: VendorMasterSync on FIN-UNATT-01"),
                    (660, "faults", "Job faulted: InvoiceProcessing on FIN-UNATT-01")] == [
                (s.at, s.rule, s.title) for s in sent
            ]  # fmt: skip
            assert (
                "3 more notification(s) of rule faults for key InvoiceProcessing were held back since" in sent[2].body
            )
            assert [("faults", "notified")] == await h.actions(first)
            assert [("faults", "throttled")] == await h.actions(second)
            reason = (await h.outcome(second))["noise"][0]["reason"]
            assert "throttled by rule 'faults' for key 'InvoiceProcessing': 1 held back until" in reason
        finally:
            await h.close()


class TestGroup:
    RULES = (
        CHANNELS
        + """
rules:
  - name: fault-digest
    match: {type: job.faulted}
    notify: [ops, mail]
    group: {by: [process], wait: 30s, interval: 5m}
"""
    )

    async def test_events_of_one_group_become_one_digest_per_window(self, tmp_path: Path, store_url: str) -> None:
        """Faults of one process within group_wait are one digest; a lone fault is its ordinary message."""
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            first = await h.post_at(0, payload("job.faulted.json"))
            await h.post_at(10, payload("job.faulted.json", Job__Robot__Name="FIN-UNATT-02"))
            await h.post_at(20, payload("events/job.faulted.other-process.json"))
            assert [] == await h.sent()
            await h.restart()  # in the middle of both windows
            await h.post_at(25, payload("job.faulted.json"))
            await h.advance(29)
            assert [] == await h.sent()
            await h.advance(100)
            sent = await h.sent()
            assert [(30, "fault-digest", "ops", first), (30, "fault-digest", "mail", first)] == [
                (s.at, s.rule, s.channel, s.inbox_id) for s in sent[:2]
            ]
            digest = sent[0]
            assert "3 job.faulted events: InvoiceProcessing (fault-digest)" == digest.title
            assert "Robots: FIN-UNATT-01 2, FIN-UNATT-02 1" in digest.body
            assert "Processes: InvoiceProcessing 3" in digest.body
            assert "Cannot find the UI element" in digest.body
            lone = sent[2:]
            assert [(50, "Job faulted: VendorMasterSync on FIN-UNATT-01")] * 2 == [(s.at, s.title) for s in lone]
            # Later faults of the first group wait for group_interval after the last digest.
            await h.post_at(120, payload("job.faulted.json"))
            await h.post_at(200, payload("job.faulted.json"))
            await h.restart()
            await h.advance(329)
            assert 4 == len(await h.sent())
            await h.advance(400)
            later = (await h.sent())[4:]
            assert [(330, "2 job.faulted events: InvoiceProcessing (fault-digest)")] * 2 == [
                (s.at, s.title) for s in later
            ]
            await h.restart()
            await h.advance(2000)
            assert 6 == len(await h.sent())  # nothing fired twice
            assert [("fault-digest", "grouped")] == await h.actions(first)
        finally:
            await h.close()


class TestFrequency:
    RULES = (
        CHANNELS
        + """
rules:
  - name: repeated-faults
    match: {type: job.faulted}
    notify: [ops]
    frequency: {count: 3, within: 10m, key: "{{ process }}"}
"""
    )

    async def test_notifies_when_enough_matches_arrive_within_the_window(self, tmp_path: Path, store_url: str) -> None:
        """Three faults of one process within 10 minutes notify once; spread-out faults never do."""
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            one = await h.post_at(0, payload("job.faulted.json"))
            await h.post_at(240, payload("job.faulted.json"))
            await h.post_at(250, payload("events/job.faulted.other-process.json"))
            await h.restart()  # two of three counted
            third = await h.post_at(480, payload("job.faulted.json"))
            sent = await h.sent()
            assert [(480, "Job faulted: InvoiceProcessing on FIN-UNATT-01")] == [(s.at, s.title) for s in sent]
            assert "3 matching events within 10m" in sent[0].body
            assert [("repeated-faults", "counted")] == await h.actions(one)
            assert [("repeated-faults", "notified")] == await h.actions(third)
            # The count starts again after a notification, and old matches slide out of the window.
            for offset in (1200, 1900, 2600):
                await h.post_at(offset, payload("job.faulted.json"))
            assert 1 == len(await h.sent())
            reason = (await h.outcome(one))["noise"][0]["reason"]
            assert "frequency of rule 'repeated-faults' for key 'InvoiceProcessing': 1 of 3 within 10m" in reason
        finally:
            await h.close()


class TestAbsence:
    RULES = (
        CHANNELS
        + """
rules:
  - name: robot-down
    match: {type: robot.status, robot_down: true}
    notify: [ops]
    absence: {expect: {type: robot.status, robot_down: false}, within: 5m}
  - name: job-too-long
    match: {type: job.started}
    notify: [ops]
    absence:
      expect: {type: [job.completed, job.faulted, job.stopped]}
      within: 30m
      key: "{{ job_key }}"
  - name: job-pending-too-long
    match: {type: job.created}
    notify: [mail]
    absence: {expect: {type: job.started}, within: 10m, key: "{{ job_key }}"}
"""
    )

    async def test_robot_down_not_back_within_five_minutes(self, tmp_path: Path, store_url: str) -> None:
        """A disconnect followed by Available within 5 minutes is quiet; one that stays notifies at 5 minutes."""
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            blip = await h.post_at(0, payload("robot.status.json"))
            back = await h.post_at(180, payload("events/robot.status.available.json"))
            await h.advance(600)
            assert [] == await h.sent()
            assert [("robot-down", "armed")] == await h.actions(blip)
            assert [("robot-down", "cancelled")] == await h.actions(back)
            down = await h.post_at(700, payload("robot.status.json"))
            await h.post_at(760, payload("robot.status.json"))  # still down: the timer is not re-armed
            await h.advance(800)
            await h.restart()  # in the middle of the timer
            await h.advance(999)
            assert [] == await h.sent()
            await h.advance(1200)
            sent = await h.sent()
            assert [(1000, "robot-down", "Robot disconnected: robot 112 on RPAVM01", down)] == [
                (s.at, s.rule, s.title, s.inbox_id) for s in sent
            ]
            assert "No event where (type is robot.status and robot_down is False) arrived within 5m" in sent[0].body
            await h.restart()
            await h.advance(5000)
            assert 1 == len(await h.sent())
        finally:
            await h.close()

    async def test_job_runs_too_long_and_job_pending_too_long(self, tmp_path: Path, store_url: str) -> None:
        """A job started and not ended within 30 minutes notifies; one that ends is quiet; so for pending jobs."""
        key = "0f3c9a7e-2d41-4b8e-9c55-7a1e6d2b4f10"
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            await h.post_at(0, payload("job.created.json"))  # two jobs pending; the first one's key is `key`
            await h.post_at(60, payload("job.started.json"))  # the first job starts: not pending any more
            await h.restart()
            await h.advance(1799)
            assert [] == await h.sent()
            await h.advance(1860)
            sent = await h.sent()
            assert [(1860, "job-too-long", "ops", "Job started: InvoiceProcessing on FIN-UNATT-01")] == [
                (s.at, s.rule, s.channel, s.title) for s in sent
            ]
            # A job that completes in time is quiet.
            await h.post_at(2000, payload("job.started.json", Job__Key="other-job"))
            await h.post_at(2100, payload("job.completed.json", Job__Key="other-job"))
            # A job created and never started: pending too long.
            await h.post_at(3000, payload("job.created.json", Jobs__Key="pending-job"))
            await h.restart()
            await h.advance(5000)
            sent = await h.sent()
            assert [("job-too-long", 1860), ("job-pending-too-long", 3600)] == [(s.rule, s.at) for s in sent]
            assert key not in sent[1].body
        finally:
            await h.close()


class TestRecovery:
    RULES = (
        CHANNELS
        + """
rules:
  - name: invoice-faults
    match: {type: job.faulted, process: "Invoice*"}
    notify: [ops]
    recover:
      match: {type: job.completed}
      key: "{{ process }}"
"""
    )

    async def test_one_recovered_message_when_the_next_run_completes(self, tmp_path: Path, store_url: str) -> None:
        """A process whose last job faulted gets one "recovered" message when a job of it completes."""
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            await h.post_at(0, payload("job.completed.json"))  # nothing was alerting: quiet
            await h.post_at(60, payload("job.faulted.json"))
            await h.post_at(120, payload("job.faulted.json"))
            await h.restart()
            ok = await h.post_at(600, payload("job.completed.json"))
            await h.post_at(700, payload("job.completed.json"))
            sent = await h.sent()
            assert [(60, "invoice-faults"), (120, "invoice-faults"), (600, "invoice-faults:recovered")] == [
                (s.at, s.rule) for s in sent
            ]
            recovered = sent[2]
            assert "Recovered: Job faulted: InvoiceProcessing on FIN-UNATT-01" == recovered.title
            assert "Cleared by: Job completed: InvoiceProcessing on FIN-UNATT-02" in recovered.body
            assert "2 times" in recovered.body
            assert [("invoice-faults:recovered", "recovered")] == await h.actions(ok)
        finally:
            await h.close()


class TestCollapse:
    RULES = (
        CHANNELS
        + """
collapse: {window: 30s}
rules:
  - name: queue-failures
    match: {type: queueItem.transactionFailed}
    notify: [ops]
"""
    )

    async def test_one_event_per_folder_of_a_shared_queue_is_one_alert(self, tmp_path: Path, store_url: str) -> None:
        """The same queue item failure sent once per folder within the window notifies once."""
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            failure = payload("queueItem.transactionFailed.json", OrganizationUnitId=1)
            first = await h.post_at(0, failure)
            copies = [await h.post_at(1, copy_of(failure) | {"OrganizationUnitId": n}) for n in (2, 3)]
            await h.restart()
            copies.append(await h.post_at(20, copy_of(failure) | {"OrganizationUnitId": 4}))
            retried = await h.post_at(25, payload("queueItem.transactionFailed.json", QueueItem__RetryNumber=1))
            await h.post_at(100, copy_of(failure))  # long after: a new failure of the item
            sent = await h.sent()
            assert [(0, first), (25, retried), (100, sent[2].inbox_id)] == [(s.at, s.inbox_id) for s in sent]
            for inbox_id in copies:
                outcome = await h.outcome(inbox_id)
                assert [("queue-failures", "")] == [(r, "") for r in outcome["matched"]]
                [decision] = outcome["noise"]
                assert "collapsed" == decision["action"]
                assert f"collapsed into event #{first}" in decision["reason"]
        finally:
            await h.close()


class TestSilences:
    RULES = (
        CHANNELS
        + """
timezone: Europe/Berlin
silences:
  - name: monday-maintenance
    comment: SAP is patched on Monday mornings
    match: {process: "Invoice*"}
    weekly:
      - days: mon
        from: "10:00"
        to: "11:00"
rules:
  - name: faults
    match: {type: job.faulted}
    notify: [ops]
"""
    )

    async def test_maintenance_window_and_ad_hoc_silences(self, tmp_path: Path, store_url: str) -> None:
        """Inside the weekly window matching faults are silenced; ad-hoc silences hold until they end or expire."""
        # T0 is Monday 09:20 UTC, 10:20 in Berlin: inside the window until 10:40 UTC... 11:00 Berlin.
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            silenced = await h.post_at(0, payload("job.faulted.json"))
            other = await h.post_at(10, payload("events/job.faulted.other-process.json"))
            after = await h.post_at(2400, payload("job.faulted.json"))  # 11:00 Berlin: the window is over
            [outcome] = (await h.outcome(silenced))["noise"]
            assert "silenced" == outcome["action"]
            assert "maintenance window 'monday-maintenance'" in outcome["reason"]
            assert "SAP is patched on Monday mornings" in outcome["reason"]
            adhoc = await store_of(h).add_silence(
                NewSilence(
                    ("process=Vendor*", "robot=FIN-UNATT-01"), "vendor sync rework", "alice", h.now, h.now + 7200
                ),
                now=h.now,
            )
            muted = await h.post_at(2500, payload("events/job.faulted.other-process.json"))
            await h.restart()
            muted_after_restart = await h.post_at(3000, payload("events/job.faulted.other-process.json"))
            await store_of(h).expire_silence(adhoc.id, now=h.now + 10)
            loud = await h.post_at(3100, payload("events/job.faulted.other-process.json"))
            sent = await h.sent()
            assert [other, after, loud] == [s.inbox_id for s in sent]
            for inbox_id in (muted, muted_after_restart):
                [decision] = (await h.outcome(inbox_id))["noise"]
                assert "silenced" == decision["action"]
                assert (
                    f"silenced by silence #{adhoc.id} (process=Vendor* robot=FIN-UNATT-01) of alice"
                    in decision["reason"]
                )
            log = await store_of(h).list_noise_log(suppressed_only=True)
            assert {silenced, muted, muted_after_restart} == {r.entry.inbox_id for r in log}
        finally:
            await h.close()


def store_of(h: Harness) -> Store:
    assert h.store is not None
    return h.store


class TestInhibition:
    RULES = (
        CHANNELS
        + """
inhibit:
  - name: robot-down-mutes-job-faults
    source_rule: robot-down
    target: {type: [job.faulted, job.stopped]}
    equal: [machine]
rules:
  - name: robot-down
    match: {type: robot.status, robot_down: true}
    notify: [ops]
    absence: {expect: {type: robot.status, robot_down: false}, within: 5m}
    recover: true
  - name: faults
    match: {type: [job.faulted, job.stopped]}
    notify: [ops]
"""
    )

    async def test_job_faults_on_a_robot_that_is_down_are_muted_and_the_robot_messages_say_so(
        self, tmp_path: Path, store_url: str
    ) -> None:
        """While a robot is down its job faults are muted; the robot-down and the recovery messages say so."""
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            await h.post_at(0, payload("robot.status.json"))
            early = await h.post_at(60, payload("job.faulted.json"))  # not down long enough yet: notifies
            await h.advance(300)
            muted = await h.post_at(400, payload("job.faulted.json"))
            await h.restart()  # while the inhibition is active
            muted_too = await h.post_at(500, payload("job.stopped.json"))
            elsewhere = await h.post_at(550, payload("job.faulted.json", Job__Robot__MachineName="RPAVM09"))
            back = await h.post_at(900, payload("events/robot.status.available.json"))
            loud_again = await h.post_at(1000, payload("job.faulted.json"))
            sent = await h.sent()
            assert [
                (60, "faults", early),
                (300, "robot-down", sent[1].inbox_id),
                (550, "faults", elsewhere),
                (900, "robot-down:recovered", back),
                (1000, "faults", loud_again),
            ] == [(s.at, s.rule, s.inbox_id) for s in sent]
            down_message = sent[1].body
            assert "events where type is one of [job.faulted, job.stopped] with the same machine" in down_message
            assert "(machine=RPAVM01) are muted (inhibit robot-down-mutes-job-faults" in down_message
            assert "While it lasted, 2 event(s) for machine=RPAVM01 were muted" in sent[3].body
            for inbox_id in (muted, muted_too):
                [decision] = (await h.outcome(inbox_id))["noise"]
                assert "inhibited" == decision["action"]
                assert "inhibited by 'robot-down-mutes-job-faults': machine=RPAVM01" in decision["reason"]
        finally:
            await h.close()


class TestCrashBeforeCommit:
    RULES = TestGroup.RULES

    async def test_a_batch_that_did_not_commit_is_processed_again_once(
        self, tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A crash between deciding and committing keeps nothing; after the lease the event is decided again, once."""
        h = await harness(tmp_path, self.RULES, store_url)
        try:
            store = store_of(h)
            original = store.finish_inbox

            async def crash(*args: object, **kwargs: object) -> None:
                raise RuntimeError("killed before the commit")

            monkeypatch.setattr(store, "finish_inbox", crash)
            with pytest.raises(RuntimeError):
                await h.post_at(0, payload("job.faulted.json"))
            monkeypatch.setattr(store, "finish_inbox", original)
            await h.restart()
            ref = ("group", "fault-digest", state_key("process=InvoiceProcessing", "uipath"))
            assert [] == await store_of(h).load_noise([ref])
            await h.advance(59)  # the claim of the crashed worker still holds the event
            assert [] == await h.sent()
            await h.advance(60)  # processed at its arrival time: its digest (of one) was due at 30, so now
            await h.restart()
            await h.advance(3600)
            sent = await h.sent()
            title = "Job faulted: InvoiceProcessing on FIN-UNATT-01"  # a digest of one keeps the event's title
            assert [(60, "ops", title), (60, "mail", title)] == [(s.at, s.channel, s.title) for s in sent]
        finally:
            await h.close()


def _shared(rules: str, shared: bool) -> str:
    """The rules with ``share_across_sources: true`` on every rule when ``shared``."""
    if not shared:
        return rules
    return re.sub(r"(\n    notify: \[[^\]\n]*\]\n)", r"\1    share_across_sources: true\n", rules)


SOURCES = """
sources:
  uipath: {secrets: [s3cret]}
  robots: {insecure: true}
"""

SHARING = [pytest.param(False, id="per-source"), pytest.param(True, id="shared")]


class TestSources:
    """Noise state is per source: an (unsigned) source cannot steer a signed source's alerts unless a rule shares."""

    @pytest.mark.parametrize("shared", SHARING)
    async def test_throttle(self, tmp_path: Path, store_url: str, shared: bool) -> None:
        """Another source's fault of the same process does not throttle this source's alert (unless shared)."""
        rules = CHANNELS + SOURCES + _shared(TestThrottle.RULES.removeprefix(CHANNELS), shared)
        h = await harness(tmp_path, rules, store_url)
        try:
            await h.post_at(0, payload("job.faulted.json"), source="robots")
            signed = await h.post_at(60, payload("job.faulted.json"))
            expected = [(0, "robots")] + ([] if shared else [(60, "uipath")])
            assert expected == [(s.at, await self._source(h, s.inbox_id)) for s in await h.sent()]
            assert [("faults", "throttled" if shared else "notified")] == await h.actions(signed)
        finally:
            await h.close()

    @pytest.mark.parametrize("shared", SHARING)
    async def test_frequency(self, tmp_path: Path, store_url: str, shared: bool) -> None:
        """Matches of two sources are counted apart: two of one and one of another are not three (unless shared)."""
        rules = CHANNELS + SOURCES + _shared(TestFrequency.RULES.removeprefix(CHANNELS), shared)
        h = await harness(tmp_path, rules, store_url)
        try:
            for offset in (0, 10):
                await h.post_at(offset, payload("job.faulted.json"), source="robots")
            await h.restart()
            signed = await h.post_at(60, payload("job.faulted.json"))
            assert ([(60, signed)] if shared else []) == [(s.at, s.inbox_id) for s in await h.sent()]
            assert [("repeated-faults", "notified" if shared else "counted")] == await h.actions(signed)
        finally:
            await h.close()

    @pytest.mark.parametrize("shared", SHARING)
    async def test_group(self, tmp_path: Path, store_url: str, shared: bool) -> None:
        """Each source's matches make their own group and message; shared, they make one digest."""
        rules = CHANNELS + SOURCES + _shared(TestGroup.RULES.removeprefix(CHANNELS), shared)
        h = await harness(tmp_path, rules, store_url)
        try:
            await h.post_at(0, payload("job.faulted.json"), source="robots")
            await h.post_at(10, payload("job.faulted.json"))
            await h.restart()
            await h.advance(600)
            ops = [(s.at, s.title) for s in await h.sent() if s.channel == "ops"]
            single = "Job faulted: InvoiceProcessing on FIN-UNATT-01"
            digest = "2 job.faulted events: InvoiceProcessing (fault-digest)"
            assert ([(30, digest)] if shared else [(30, single), (40, single)]) == ops
        finally:
            await h.close()

    @pytest.mark.parametrize("shared", SHARING)
    async def test_absence(self, tmp_path: Path, store_url: str, shared: bool) -> None:
        """Another source's "robot back" does not cancel this source's robot-down timer (unless shared)."""
        rules = CHANNELS + SOURCES + _shared(TestAbsence.RULES.removeprefix(CHANNELS), shared)
        h = await harness(tmp_path, rules, store_url)
        try:
            down = await h.post_at(0, payload("robot.status.json"))
            fake = await h.post_at(60, payload("events/robot.status.available.json"), source="robots")
            await h.restart()
            await h.advance(600)
            sent = await h.sent()
            assert ([] if shared else [(300, "robot-down", down)]) == [(s.at, s.rule, s.inbox_id) for s in sent]
            assert ([("robot-down", "cancelled")] if shared else []) == await h.actions(fake)
        finally:
            await h.close()

    @pytest.mark.parametrize("shared", SHARING)
    async def test_recovery(self, tmp_path: Path, store_url: str, shared: bool) -> None:
        """Another source's completed job does not announce this source's recovery (unless shared); its own does."""
        rules = CHANNELS + SOURCES + _shared(TestRecovery.RULES.removeprefix(CHANNELS), shared)
        h = await harness(tmp_path, rules, store_url)
        try:
            await h.post_at(0, payload("job.faulted.json"))
            fake = await h.post_at(60, payload("job.completed.json"), source="robots")
            await h.restart()
            real = await h.post_at(120, payload("job.completed.json"))
            recovered = [s.inbox_id for s in await h.sent() if s.rule == "invoice-faults:recovered"]
            assert [fake if shared else real] == recovered
        finally:
            await h.close()

    @pytest.mark.parametrize("shared", SHARING)
    async def test_inhibition(self, tmp_path: Path, store_url: str, shared: bool) -> None:
        """Another source's robot-down does not mute this source's job faults on that machine (unless shared)."""
        share = "\n    share_across_sources: true" if shared else ""
        rules = f"""{CHANNELS}{SOURCES}
inhibit:
  - name: down-mutes-faults
    source: {{type: robot.status, robot_down: true}}
    target: {{type: job.faulted}}
    equal: [machine]{share}
rules:
  - name: faults
    match: {{type: job.faulted}}
    notify: [ops]
"""
        h = await harness(tmp_path, rules, store_url)
        try:
            await h.post_at(0, payload("robot.status.json"), source="robots")
            fault = await h.post_at(60, payload("job.faulted.json"))
            assert ([] if shared else [fault]) == [s.inbox_id for s in await h.sent()]
            assert [("faults", "inhibited" if shared else "notified")] == await h.actions(fault)
            mine = await h.post_at(120, payload("job.faulted.json"), source="robots")
            assert [("faults", "inhibited")] == await h.actions(mine)
        finally:
            await h.close()

    @staticmethod
    async def _source(h: Harness, inbox_id: int) -> str:
        rows = await store_of(h).list_events(limit=100)
        return next(r.source for r in rows if r.id == inbox_id)
