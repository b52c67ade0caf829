"""The scenarios: each loads the image in a fresh emulator, runs
DriverEntry, drives notifyFn / classifyFn / the control device, unloads,
and checks that nothing of the driver's is left. A scenario returns a
one-line summary or raises :class:`ScenarioFailure`."""

import ipaddress

import capstone

from . import constants as c
from . import wire
from .harness import Connection, Harness, ScenarioFailure, describe
from .kernel import tag_name
from .packets import MAC_HEADER

TICKS_PER_SECOND = 10_000_000
GARBAGE_CONTEXT = 0xFFFF_F00D_DEAD_0000  # unmapped: dereferencing it fails the run


def expect(condition, message):
    if not condition:
        raise ScenarioFailure(message)


def expect_verdict(result, action, write_right, what, flags=0):
    rights = c.FWPS_RIGHT_ACTION_WRITE if write_right else 0
    ok = (result["actionType"] == action and result["rights"] & c.FWPS_RIGHT_ACTION_WRITE == rights
          and result["flags"] == flags and result["pended"] is None)
    want = {"actionType": action, "rights": rights, "flags": flags, "pended": None}
    expect(ok, f"{what}: expected {describe(want)}, got {describe(result)}")


def status_name(status):
    names = {v: k for k, v in vars(c).items() if k.startswith("STATUS_") and isinstance(v, int)}
    return names.get(status, f"{status:#010x}")


def expect_status(status, wanted, what):
    expect(status == wanted, f"{what}: {status_name(status)}, expected {status_name(wanted)}")


def pool_counts(h):
    return {tag: count for tag, (count, _) in h.kernel.pool_in_use().items()}


def context_behind(h, word):
    """The context address a filter->context handle names, or None. The word
    is not a pointer (driver/filters/context_slots.rs): bits 23-31 name the
    slot's segment, bits 4-13 its place in it (bits 14-22 are 0 in every
    handle), and the slot is at byte offset word & 0x3ff0 of one of the
    driver's WfTb segments (1,024 slots of 16 bytes: the key, which is the
    whole word while the handle is live, its low four bits the claim's tag,
    then the context's address)."""
    if word & 0x7FC000:
        return None
    key = word
    found = []
    for block in h.kernel.pool.values():
        if tag_name(block.tag) == "WfTb" and block.size == 1024 * 16:
            slot = block.address + (word & 0x3FF0)
            if h.kernel.read_u64(slot, "handle slot") == key:
                found.append(h.kernel.read_u64(slot + 8, "handle slot"))
    return found[0] if len(found) == 1 else None


def added(h, policy, what, **kwargs):
    """A filter added through notifyFn ADD, checked: success, and
    filter->context now a handle whose slot holds the address of a live
    WfFc pool block."""
    f = h.make_filter(policy, **kwargs)
    status = h.add_filter(f)
    expect_status(status, c.STATUS_SUCCESS, f"notifyFn ADD ({what})")
    word = h.filter_context(f)
    context = context_behind(h, word)
    block = h.kernel.pool_block_at(context) if context is not None else None
    expect(block is not None and tag_name(block.tag) == "WfFc" and block.address == context,
           f"notifyFn ADD ({what}): filter->context {word:#x} is not a handle to a live WfFc block")
    return f


def deleted(h, f, what):
    before = pool_counts(h).get("WfFc", 0)
    status = h.delete_filter(f)
    expect_status(status, c.STATUS_SUCCESS, f"notifyFn DELETE ({what})")
    after = pool_counts(h).get("WfFc", 0)
    expect(after == before - 1, f"notifyFn DELETE ({what}): WfFc blocks {before} -> {after}, expected one freed")


# ---- scenarios ---------------------------------------------------------------


def load_unload(h):
    """DriverEntry's registrations, read at the documented offsets."""
    registered = h.registered()
    expect(set(registered) == set(c.CALLOUTS),
           f"registered callouts {sorted(registered)} are not the published six")
    classify_fn = h.symbol("trampolines", "classify_fn")
    notify_fn = h.symbol("trampolines", "notify_fn")
    flow_delete_fn = h.symbol("flow_delete", "flow_delete_fn")
    for key, callout in registered.items():
        layer, tracks_flows = c.CALLOUTS[key]
        expect(callout.classify_fn == classify_fn,
               f"{key}: FWPS_CALLOUT2.classifyFn {callout.classify_fn:#x} is not classify_fn {classify_fn:#x}")
        expect(callout.notify_fn == notify_fn,
               f"{key}: FWPS_CALLOUT2.notifyFn {callout.notify_fn:#x} is not notify_fn {notify_fn:#x}")
        expect(callout.flow_delete_fn == (flow_delete_fn if tracks_flows else 0),
               f"{key}: FWPS_CALLOUT2.flowDeleteFn {callout.flow_delete_fn:#x}")
        expect(callout.flags == 0, f"{key}: FWPS_CALLOUT2.flags {callout.flags:#x}")
        managed = h.wfp.mgmt_callouts.get(key)
        expect(managed is not None, f"{key}: no FWPM_CALLOUT0 added")
        expect(managed["layer"] == layer, f"{key}: FWPM_CALLOUT0 at {c.LAYER_NAMES.get(managed['layer'])}")
        expect(managed["flags"] & c.FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT,
               f"{key}: FWPM_CALLOUT0 without FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT")
        expect(managed["provider"] == c.PROVIDER_KEY, f"{key}: FWPM_CALLOUT0 providerKey {managed['provider']}")
        expect(managed["id"] == callout.id, f"{key}: FWPM and FWPS callout ids differ")
    expect(c.PROVIDER_KEY in h.wfp.providers, "provider not added")
    sublayer = h.wfp.sublayers.get(c.SUBLAYER_KEY)
    expect(sublayer is not None and sublayer["provider"] == c.PROVIDER_KEY, "sublayer not added under our provider")
    expect(h.wfp.stats["transactions_committed"] == 1, "the management objects were not added in one committed "
           "transaction")
    expect(h.wfp.stats["enum_batches"] >= len(c.CALLOUTS), "existing filters were not enumerated per callout")
    wdf = h.kernel.wdf
    expect(wdf.events[:2] == ["bind", "WdfDriverCreate"], f"KMDF order: {wdf.events}")
    expect(wdf.device["link"] == "\\DosDevices\\WfpCallout", f"symbolic link {wdf.device['link']!r}")
    expect(wdf.device["file_cleanup"] != 0, "no EvtFileCleanup: a closed agent would not end its requests")
    blocks = sum(pool_counts(h).values())
    return (f"6 callouts at FWPS_CALLOUT2 offsets 0/24/32/40 = classify_fn/notify_fn/flow_delete_fn; "
            f"provider+sublayer+6 FWPM callouts committed; {blocks} pool block(s) at load")


def permit(h):
    conn = Connection()
    f = added(h, wire.permit("allow-web"), "permit")
    expect_verdict(h.classify(f, conn), c.FWP_ACTION_PERMIT, True, "permit")
    hard = added(h, wire.permit("hard"), "permit, clear-action-right",
                 fwpm_flags=c.FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT)
    expect_verdict(h.classify(hard, conn, processor=1), c.FWP_ACTION_PERMIT, False, "permit with CLEAR_ACTION_RIGHT")
    # A higher filter decided already: no write right, nothing may be written.
    untouched = h.classify(f, conn, rights=0, processor=2)
    expect(untouched["actionType"] == 0 and untouched["rights"] == 0 and untouched["flags"] == 0,
           f"classify without the write right wrote {describe(untouched)}")
    default = added(h, None, "no provider context")
    expect_verdict(h.classify(default, conn), c.FWP_ACTION_PERMIT, True, "default policy")
    for f_, what in ((f, "permit"), (hard, "hard permit"), (default, "default")):
        deleted(h, f_, what)
    return "PERMIT keeps WRITE; CLEAR_ACTION_RIGHT clears it; no write right -> untouched; no context -> default permit"


def block(h):
    f = added(h, wire.block("deny-telemetry"), "block")
    # The static path reads the index's low byte: its rundown line (256).
    for processor in (0, 1, 2, 3, 257):
        reads = len(h.kernel.pcr_number_reads)
        expect_verdict(h.classify(f, Connection(local_port=50000 + processor), processor=processor),
                       c.FWP_ACTION_BLOCK, False, f"block on processor {processor}")
        read = h.kernel.pcr_number_reads[reads:]
        expect(read == [processor & 0xFF], f"block on processor {processor}: the static path's reads of the processor "
               f"index (KPCR+0x1a4) saw {read}; expected one read, of its low byte {processor & 0xFF}")
    deleted(h, f, "block")
    return "BLOCK with FWPS_RIGHT_ACTION_WRITE cleared, on processors 0-3 and 257 (its low byte, 1)"


def audit(h):
    f = added(h, wire.audit("audit-dns"), "audit")
    expect_verdict(h.classify(f, Connection(remote_port=53, protocol=17)), c.FWP_ACTION_PERMIT, True, "audit")
    line = f"audit: filter {f.id} (audit-dns) permitted"
    expect(any(line in text for _, _, text in h.kernel.driver_lines), f"no DbgPrintEx line {line!r}")
    deleted(h, f, "audit")
    return "PERMIT, write right kept, audit line printed through DbgPrintEx"


def rate_limit(h):
    f = added(h, wire.rate_limit(2, 3, "two-per-second"), "rate-limit")
    verdicts = []
    for index in range(5):
        result = h.classify(f, Connection(local_port=40000 + index), processor=index % 4)
        verdicts.append(result)
    for index in range(3):
        expect_verdict(verdicts[index], c.FWP_ACTION_PERMIT, True, f"rate-limit burst, connection {index + 1}")
    for index in (3, 4):
        expect_verdict(verdicts[index], c.FWP_ACTION_BLOCK, False, f"rate-limit past the burst, connection {index + 1}")
    h.kernel.clock += TICKS_PER_SECOND // 2  # one token at 2/s
    expect_verdict(h.classify(f, Connection(local_port=40010)), c.FWP_ACTION_PERMIT, True, "rate-limit refilled")
    expect_verdict(h.classify(f, Connection(local_port=40011)), c.FWP_ACTION_BLOCK, False, "rate-limit empty again")
    deleted(h, f, "rate-limit")
    return "burst 3: PERMIT x3 then BLOCK (write right cleared); +0.5 s at 2/s: one more PERMIT, then BLOCK"


def ask_without_agent(h):
    f = added(h, wire.ask(5000, wire.VERDICT_BLOCK, "ask-no-agent"), "ask")
    expect_verdict(h.classify(f, Connection()), c.FWP_ACTION_BLOCK, False, "ask with no agent (default block)")
    expect(not h.wfp.pended, "ask with no agent pended anyway")
    permit_default = added(h, wire.ask(5000, wire.VERDICT_PERMIT, "ask-default-permit"), "ask")
    expect_verdict(h.classify(permit_default, Connection()), c.FWP_ACTION_PERMIT, True, "ask, default permit")
    deleted(h, f, "ask")
    deleted(h, permit_default, "ask")
    return "no agent connected: default verdict at once (BLOCK / PERMIT), nothing pended"


def delete_unknown(h):
    before = h.kernel.pool_in_use()
    stranger = h.make_filter(wire.block("never-added"), raw_context=GARBAGE_CONTEXT)
    h.materialize(stranger, GARBAGE_CONTEXT)
    status = h.delete_filter(stranger)
    expect_status(status, c.STATUS_SUCCESS, "DELETE for a filter never added")
    expect(h.kernel.pool_in_use() == before, "DELETE for an unknown filter changed the pool")
    return f"STATUS_SUCCESS, context {GARBAGE_CONTEXT:#x} never dereferenced, pool unchanged"


def malformed_policy(h):
    bad = {
        "bad magic": wire.policy_blob(wire.ACTION_BLOCK, magic=b"XXXX"),
        "version 2": wire.policy_blob(wire.ACTION_BLOCK, version=2),
        "total_len too long": wire.policy_blob(wire.ACTION_BLOCK, total_len=25),
        "truncated header": wire.block()[:20],
        "unknown action 9": wire.policy_blob(9),
        "rate-limit burst 0": wire.policy_blob(wire.ACTION_RATE_LIMIT, param_a=5, param_b=0),
        "ask verdict 7": wire.policy_blob(wire.ACTION_ASK, verdict=7, param_a=100),
        "label not UTF-8": wire.policy_blob(wire.ACTION_BLOCK, label=b"\xff\xfe"),
        "label with ESC": wire.policy_blob(wire.ACTION_BLOCK, label=b"web\x1b[2J"),
    }
    before = h.kernel.pool_in_use()
    for what, blob in bad.items():
        f = h.make_filter(blob)
        status = h.add_filter(f)
        expect(not c.nt_success(status), f"notifyFn ADD accepted a malformed policy ({what})")
        expect(f.id not in h.wfp.filters, "vetoed filter still in the engine")
    wrong_type = h.make_filter(wire.block(), context_type=1)  # FWPM_IPSEC_KEYING_CONTEXT, say
    status = h.add_filter(wrong_type)
    expect(not c.nt_success(status), "notifyFn ADD accepted a provider context that is not FWPM_GENERAL_CONTEXT")
    expect(h.kernel.pool_in_use() == before, "a vetoed ADD left pool allocated")
    return f"{len(bad) + 1} bad blobs vetoed (notify returned {status_name(status)}), pool unchanged"


def adopt_preexisting(h):
    """Set up before DriverEntry (see PREPARE): filters left by an earlier
    load, whose FWPS context holds garbage."""
    adopted = h.preexisting
    expect(pool_counts(h).get("WfFc", 0) == len(adopted), f"{pool_counts(h).get('WfFc', 0)} contexts after load, "
           f"expected one per pre-existing filter ({len(adopted)})")
    expect(h.kernel.api_counts["FwpmProviderContextGetByKey2"] == 2,
           "provider contexts of the adopted filters were not fetched")
    expect(not h.wfp.engine_memory, "engine memory from the enumeration was not freed")
    blocked, defaulted, malformed = adopted
    conn = Connection()
    for f in adopted:
        h.materialize(f, GARBAGE_CONTEXT)
    expect_verdict(h.classify(blocked, conn), c.FWP_ACTION_BLOCK, False,
                   "adopted filter with a block policy (garbage context)")
    expect_verdict(h.classify(defaulted, conn), c.FWP_ACTION_PERMIT, True, "adopted filter without provider context")
    expect_verdict(h.classify(malformed, conn), c.FWP_ACTION_PERMIT, True, "adopted filter with a malformed policy")
    fresh = added(h, wire.block("added-later"), "block, while adopted filters live")
    expect_verdict(h.classify(fresh, conn), c.FWP_ACTION_BLOCK, False, "filter added after adoption")
    for f in adopted:
        deleted(h, f, "adopted")
    deleted(h, fresh, "added later")
    return ("3 filters adopted by FwpmFilterEnum0 (FWPM_FILTER0 from the table) + FwpmProviderContextGetByKey2; "
            f"garbage context {GARBAGE_CONTEXT:#x}: BLOCK from the provider-context policy")


def prepare_adoption(h):
    # What an earlier load left: the management objects and three filters.
    h.wfp.providers[c.PROVIDER_KEY] = {"flags": 0}
    h.wfp.sublayers[c.SUBLAYER_KEY] = {"provider": c.PROVIDER_KEY, "weight": 0x8000}
    for key, (layer, _) in c.CALLOUTS.items():
        h.wfp.mgmt_callout_ids[key] = h.wfp.next_callout_id
        h.wfp.mgmt_callouts[key] = {"flags": c.FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT, "layer": layer,
                                    "provider": c.PROVIDER_KEY, "id": h.wfp.next_callout_id}
        h.wfp.next_callout_id += 1
    h.preexisting = [
        h.make_filter(wire.block("persistent-block"), raw_context=GARBAGE_CONTEXT),
        h.make_filter(None, raw_context=GARBAGE_CONTEXT),
        h.make_filter(wire.policy_blob(wire.ACTION_BLOCK, magic=b"OLD!"), raw_context=GARBAGE_CONTEXT),
    ]
    for f in h.preexisting:
        h.add_preexisting(f)


def ask_pend_permit(h):
    conn = Connection(local="10.1.2.3", local_port=51515, remote="198.51.100.7", remote_port=8443, process_id=3130)
    agent = h.open_file()
    reply = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    expect(reply["state"] == "parked", f"GET_REQUEST with nothing queued is {reply['state']}, not parked")
    version = h.ioctl(agent, wire.IOCTL_GET_VERSION, output_length=16)
    expect_status(version["status"], c.STATUS_SUCCESS, "GET_VERSION")
    info = wire.decode_version(version["output"])
    wanted = wire.VERSION_FLAG_LOADED | wire.VERSION_FLAG_ADOPTION_COMPLETE | wire.VERSION_FLAG_AGENT_CONNECTED
    expect(info["abi_version"] == 2 and info["flags"] == wanted, f"GET_VERSION: {info}")

    f = added(h, wire.ask(30_000, wire.VERDICT_BLOCK, "ask-web"), "ask")
    result = h.classify(f, conn, processor=3)
    expect(result["pended"] is not None, f"ask with an agent did not pend: {describe(result)}")
    expect(len(h.wfp.pended) == 1 and not h.wfp.completions, "FwpsPendOperation0 bookkeeping")

    # classify's hook paired the pended request with the parked IOCTL.
    expect(reply["completed"], "the parked GET_REQUEST was not completed when classify pended")
    expect_status(reply["status"], c.STATUS_SUCCESS, "parked GET_REQUEST")
    expect(reply["information"] == wire.ASK_REQUEST_LEN, f"GET_REQUEST returned {reply['information']} bytes")
    request = wire.decode_ask_request(reply["output"])
    expected = {"filter_id": f.id, "process_id": 3130, "layer_id": c.FWPS_LAYER_ALE_AUTH_CONNECT_V4, "direction": 0,
                "ip_version": 4, "protocol": 6, "default_verdict": wire.VERDICT_BLOCK, "timeout_ms": 30_000,
                "local_address": ipaddress.IPv4Address("10.1.2.3"), "local_port": 51515,
                "remote_address": ipaddress.IPv4Address("198.51.100.7"), "remote_port": 8443, "label": "ask-web"}
    for key, value in expected.items():
        expect(request[key] == value, f"ask request {key}: {request[key]!r}, expected {value!r}")
    again = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    expect(again["state"] == "parked", "GET_REQUEST after the only request was taken is not parked")

    verdict = h.ioctl(agent, wire.IOCTL_AGENT_SET_VERDICT, wire.verdict_message(request["request_id"],
                                                                                wire.VERDICT_PERMIT))
    expect_status(verdict["status"], c.STATUS_SUCCESS, "SET_VERDICT permit")
    expect(len(h.wfp.completions) == 1, f"FwpsCompleteOperation0 called {len(h.wfp.completions)} times, expected 1")
    completion = h.wfp.completions[0]
    expect(completion["context"] == result["pended"], "completed another operation than the one pended")
    expect(not completion["with_packet"], "completed with a NET_BUFFER_LIST at ALE_AUTH_CONNECT")
    reauth = completion["reauthorization"]
    expect(isinstance(reauth, dict), f"reauthorization: {reauth}")
    expect_verdict(reauth, c.FWP_ACTION_PERMIT, True, "reauthorization after the agent permitted")

    duplicate = h.ioctl(agent, wire.IOCTL_AGENT_SET_VERDICT, wire.verdict_message(request["request_id"],
                                                                                  wire.VERDICT_BLOCK))
    expect_status(duplicate["status"], c.STATUS_NOT_FOUND, "a second verdict for the same request")
    expect(len(h.wfp.completions) == 1, "a duplicate verdict completed the operation again")
    deleted(h, f, "ask")
    h.cleanup_file(agent)
    expect_status(again["status"], c.STATUS_CANCELLED, "the parked GET_REQUEST when its handle closed")
    h.close_file(agent)
    return (f"GET_REQUEST parked; classify pended (BLOCK+ABSORB, write right cleared) and its hook completed the "
            f"parked IOCTL with the 136-byte request id {request['request_id']}; SET_VERDICT permit -> "
            f"FwpsCompleteOperation0 x1 -> reauthorization {describe(reauth)}; duplicate verdict NOT_FOUND; "
            "EvtFileCleanup cancelled the next parked GET_REQUEST")


def reauthorize_policy_change(h):
    """An approved connection stays approved ("ALE Re-authorization"): the
    agent permits a pended connect (default block), the completion's
    reauthorization (CLASSIFY_COMPLETION) permits; later reauthorizations
    of the same connection for a policy change and a new arrival interface
    get the same PERMIT, again and again, not the default; a connection the
    driver never decided gets the default BLOCK."""
    conn = Connection(layer_id=c.FWPS_LAYER_ALE_AUTH_CONNECT_V4)
    agent = h.open_file()
    # The first GET_REQUEST makes the handle an agent (nothing queued yet).
    reply = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    expect(reply["state"] == "parked", "GET_REQUEST with nothing queued is not parked")
    f = added(h, wire.ask(30_000, wire.VERDICT_BLOCK, "ask-keep"), "ask")
    result = h.classify(f, conn)
    expect(result["pended"] is not None, f"ask with an agent did not pend: {describe(result)}")
    expect_status(reply["status"], c.STATUS_SUCCESS, "the parked GET_REQUEST once classify pended")
    request = wire.decode_ask_request(reply["output"])
    verdict = h.ioctl(agent, wire.IOCTL_AGENT_SET_VERDICT, wire.verdict_message(request["request_id"],
                                                                                wire.VERDICT_PERMIT))
    expect_status(verdict["status"], c.STATUS_SUCCESS, "SET_VERDICT permit")
    expect_verdict(h.wfp.completions[0]["reauthorization"], c.FWP_ACTION_PERMIT, True, "completion reauthorization")
    reasons = [c.REAUTHORIZE_REASON_POLICY_CHANGE, c.REAUTHORIZE_REASON_NEW_ARRIVAL_INTERFACE,
               c.REAUTHORIZE_REASON_POLICY_CHANGE]
    for reason in reasons:
        again = h.classify(f, conn, reauthorization=True, reason=reason)
        expect_verdict(again, c.FWP_ACTION_PERMIT, True, f"reauthorization for reason {reason:#x}")
    stranger = Connection(layer_id=c.FWPS_LAYER_ALE_AUTH_CONNECT_V4, remote_port=9999)
    other = h.classify(f, stranger, reauthorization=True, reason=c.REAUTHORIZE_REASON_POLICY_CHANGE)
    expect_verdict(other, c.FWP_ACTION_BLOCK, False, "reauthorization of a connection never decided")
    deleted(h, f, "ask")
    h.cleanup_file(agent)
    h.close_file(agent)
    return ("agent permit -> completion reauthorization PERMIT; policy change, new interface, policy change: "
            "PERMIT each time (kept, not consumed); an undecided connection: default BLOCK")


def ask_agent_gone(h):
    agent = h.open_file()
    h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    f = added(h, wire.ask(30_000, wire.VERDICT_BLOCK, "ask-then-leave"), "ask")
    first = h.classify(f, Connection(local_port=41000))
    second = h.classify(f, Connection(local_port=41001))
    expect(first["pended"] and second["pended"], "ask with an agent did not pend")
    h.cleanup_file(agent)  # the agent's last handle goes
    expect(len(h.wfp.completions) == 2, f"{len(h.wfp.completions)} completions after the agent left, expected 2")
    for completion in h.wfp.completions:
        expect_verdict(completion["reauthorization"], c.FWP_ACTION_BLOCK, False,
                       "reauthorization after the agent left (default block)")
    h.close_file(agent)
    expect_verdict(h.classify(f, Connection(local_port=41002)), c.FWP_ACTION_BLOCK, False, "ask after the agent left")
    deleted(h, f, "ask")
    return "EvtFileCleanup of the last agent: 2 pended requests completed once each, reauthorized with default BLOCK"


def ioctl_buffers(h):
    handle = h.open_file()
    checks = [
        ("GET_VERSION, 15-byte output", wire.IOCTL_GET_VERSION, b"", 15, c.STATUS_BUFFER_TOO_SMALL),
        ("GET_VERSION with input", wire.IOCTL_GET_VERSION, b"x", 16, c.STATUS_INVALID_BUFFER_SIZE),
        ("input over MAX_INPUT_LEN", wire.IOCTL_AGENT_SET_VERDICT, bytes(257), 0, c.STATUS_INVALID_BUFFER_SIZE),
        ("SET_VERDICT, 15 bytes", wire.IOCTL_AGENT_SET_VERDICT, bytes(15), 0, c.STATUS_INVALID_PARAMETER),
        ("SET_VERDICT, unknown id", wire.IOCTL_AGENT_SET_VERDICT, wire.verdict_message(99, 1), 0,
         c.STATUS_NOT_FOUND),
        ("GET_REQUEST, 100-byte output", wire.IOCTL_AGENT_GET_REQUEST, b"", 100, c.STATUS_BUFFER_TOO_SMALL),
        ("unknown function", wire.ctl_code(0x12, 0x8FF, 0, 0), b"", 0, c.STATUS_INVALID_DEVICE_REQUEST),
        ("SET_LOG_LEVEL, level 5", wire.IOCTL_SET_LOG_LEVEL, wire.log_gate(5), 0, c.STATUS_INVALID_PARAMETER),
        ("SET_LOG_LEVEL trace", wire.IOCTL_SET_LOG_LEVEL, wire.log_gate(wire.LOG_TRACE), 0, c.STATUS_SUCCESS),
        ("METHOD_NEITHER", wire.ctl_code(0x12, 0x800, 3, 1), b"", 16, c.STATUS_INVALID_DEVICE_REQUEST),
    ]
    for what, code, data, out, status in checks:
        reply = h.ioctl(handle, code, data, out)
        expect_status(reply["status"], status, what)
        expect(reply["information"] == 0, f"{what}: Information {reply['information']}")
    h.cleanup_file(handle)
    h.close_file(handle)
    return f"{len(checks)} IOCTLs (malformed ones refused, SET_LOG_LEVEL taken) answered with the documented statuses, Information 0"


def pool_exhausted(h):
    before = h.kernel.pool_in_use()
    for tag in ("WfFc", "WfTb"):
        h.kernel.fail_allocations[tag] = 1
        f = h.make_filter(wire.block(f"no-{tag}"))
        status = h.add_filter(f)
        h.kernel.fail_allocations[tag] = 0
        if tag == "WfTb" and c.nt_success(status):
            # The table had room: it did not need to grow.
            h.delete_filter(f)
            continue
        expect_status(status, c.STATUS_INSUFFICIENT_RESOURCES, f"notifyFn ADD with {tag} allocation failing")
        expect(h.kernel.pool_in_use() == before, f"a failed ADD ({tag}) left pool allocated")
    f = added(h, wire.block("after"), "block, pool back")
    expect_verdict(h.classify(f, Connection()), c.FWP_ACTION_BLOCK, False, "block after the failures")
    deleted(h, f, "block")
    return "ExAllocatePool2 failing for WfFc / WfTb: ADD vetoed with INSUFFICIENT_RESOURCES, nothing leaked"


def unload_with_live_state(h):
    """Unload (the I/O manager calls DriverUnload only once every handle to
    the device is closed) while filters are live and an answered request
    still waits for a reauthorization that never comes (its connection went
    away): the driver must free all of it itself."""
    agent = h.open_file()
    parked = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    added(h, wire.block("left-1"), "block")
    limited = added(h, wire.rate_limit(5, 5, "left-2"), "rate-limit")
    h.classify(limited, Connection(), processor=2)
    asked = added(h, wire.ask(60_000, wire.VERDICT_PERMIT, "left-pending"), "ask")
    expect(h.classify(asked, Connection())["pended"], "ask did not pend")
    expect_status(parked["status"], c.STATUS_SUCCESS, "the parked GET_REQUEST once classify pended")
    request = wire.decode_ask_request(parked["output"])
    h.wfp.drop_reauthorizations = True  # the connection is gone before the engine reauthorizes it
    reply = h.ioctl(agent, wire.IOCTL_AGENT_SET_VERDICT, wire.verdict_message(request["request_id"],
                                                                              wire.VERDICT_BLOCK))
    expect_status(reply["status"], c.STATUS_SUCCESS, "SET_VERDICT block")
    expect(len(h.wfp.completions) == 1, "SET_VERDICT did not complete the operation once")
    h.cleanup_file(agent)
    h.close_file(agent)
    usage = pool_counts(h)
    expect(usage.get("WfPr") == 1, f"the answered request is not kept for its reauthorization: {usage}")
    live = sum(usage.values())
    h.unload_and_check()
    return (f"unload with 3 filters and an answered request whose reauthorization never came ({live} pool "
            "blocks: " + ", ".join(f"{t} {n}" for t, n in sorted(usage.items())) + "): all freed; callouts, "
            "session, injection handle, device gone")


def unload_busy_unregister(h):
    """DriverUnload does not return while a callout is registered
    ("Unloading a Callout Driver"): the engine answers STATUS_DEVICE_BUSY
    to the first 120 unregistrations (more than the 50 retries unload used to give up after), and the image keeps removing flow
    contexts, waiting (KeDelayExecutionThread at PASSIVE_LEVEL) and asking
    again until every callout is unregistered; only then does it free its
    contexts and return."""
    f = added(h, wire.permit("busy"), "permit")
    expect_verdict(h.classify(f, Connection()), c.FWP_ACTION_PERMIT, True, "permit")
    deleted(h, f, "permit")
    h.wfp.busy_unregisters = 120
    h.unload_and_check()
    expect(h.wfp.busy_answered == 120, f"unload stopped asking after {h.wfp.busy_answered} busy answers, expected 120")
    expect(not h.wfp.callouts, f"DriverUnload returned with {len(h.wfp.callouts)} callouts registered")
    return ("120 STATUS_DEVICE_BUSY answers to FwpsCalloutUnregisterById0: DriverUnload kept asking (with waits) "
            "until all 6 callouts were unregistered, then freed everything")


def flow_established(h):
    """ALE_FLOW_ESTABLISHED_V4, where "a filter should not return Block or
    Permit": a permit filter (an inspection callout action) answers
    CONTINUE with the write right left alone, and its classification
    associates a flow context (a WfFl block) with the flow, which
    flowDeleteFn frees when the connection closes; a block policy and a
    terminating action are refused by notifyFn ADD with
    STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER (nothing allocated); a flow
    that outlives its filter keeps the filter's context alive; unload
    removes the flow context still associated (PENDING: freed in
    flowDeleteFn)."""
    conn = Connection(layer_id=c.FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4)
    f = added(h, wire.permit("flows"), "permit at flow-established", callout_key=c.CALLOUT_FLOW_V4)
    expect_verdict(h.classify(f, conn, flow_handle=0x1111), c.FWP_ACTION_CONTINUE, True, "permit, flow-established")
    contexts = dict(h.wfp.flow_contexts)
    expect(len(contexts) == 1, f"a permitted flow associated {len(contexts)} flow contexts, expected 1")
    (flow_id, layer_id, _), context = next(iter(contexts.items()))
    expect((flow_id, layer_id) == (0x1111, c.FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4),
           f"flow context associated with flow {flow_id:#x} at layer {layer_id}, expected 0x1111 at "
           f"{c.FWPS_LAYER_ALE_FLOW_ESTABLISHED_V4}")
    block = h.kernel.pool_block_at(context)
    expect(block is not None and tag_name(block.tag) == "WfFl",
           f"the flow context {context:#x} does not point into a live WfFl block")
    expect(h.end_flow(0x1111) == 1, "the engine found no flow context to delete")
    expect(pool_counts(h).get("WfFl", 0) == 0, "flowDeleteFn did not free the flow context")
    before = pool_counts(h).get("WfFc", 0)
    refused = h.make_filter(wire.block("no-flows"), callout_key=c.CALLOUT_FLOW_V4)
    expect_status(h.add_filter(refused), c.STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER,
                  "notifyFn ADD of a block policy at flow-established")
    terminating = h.make_filter(wire.permit("terminating"), callout_key=c.CALLOUT_FLOW_V4,
                                action_type=c.FWP_ACTION_CALLOUT_TERMINATING)
    expect_status(h.add_filter(terminating), c.STATUS_FWP_ACTION_INCOMPATIBLE_WITH_LAYER,
                  "notifyFn ADD of a terminating action at flow-established")
    expect(pool_counts(h).get("WfFc", 0) == before, "a refused filter left a context behind")
    expect_verdict(h.classify(f, conn, flow_handle=0x3333), c.FWP_ACTION_CONTINUE, True, "second flow")
    expect(len(h.wfp.flow_contexts) == 1, "the second flow was not tracked")
    status = h.delete_filter(f)
    expect_status(status, c.STATUS_SUCCESS, "notifyFn DELETE with a live flow")
    usage = pool_counts(h)
    expect(usage.get("WfFc") == 1 and usage.get("WfFl") == 1,
           f"the live flow must keep its filter's context: {usage}")
    h.unload_and_check()
    return ("permit answers CONTINUE and associates a WfFl flow context, flowDeleteFn frees it; block policy "
            "and terminating action refused (ACTION_INCOMPATIBLE_WITH_LAYER); a flow outliving its filter keeps "
            "the context; unload asks for the last one's removal and frees all")


def ask_recv_accept(h):
    """The inbound ask path at ALE_AUTH_RECV_ACCEPT_V4, where completion does
    not reauthorize: the pended connection's first packet is cloned (at its
    IP header, the engine's packet put back where it was), the operation is
    completed with the clone and the verdict injects it (permit: the
    engine classifies the injected clone, which must be recognised as the
    driver's own, and the injection's completion frees it), or completed
    with NULL and the clone freed (block)."""
    packets, wfp = h.kernel.packets, h.wfp
    agent = h.open_file()
    reply = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    expect(reply["state"] == "parked", "GET_REQUEST with nothing queued is not parked")
    f = added(h, wire.ask(30_000, wire.VERDICT_BLOCK, "ask-inbound"), "ask at recv-accept",
              callout_key=c.CALLOUT_RECV_ACCEPT_V4)
    tcp = Connection(layer_id=c.FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, local="10.0.0.2", local_port=8080,
                     remote="203.0.113.9", remote_port=49152, process_id=2020, interface_index=12,
                     sub_interface_index=3, compartment_id=c.DEFAULT_COMPARTMENT_ID)
    clone, pended = pend_inbound(h, f, tcp, "TCP SYN")
    request = agent_request(reply, f, tcp)
    verdict = h.ioctl(agent, wire.IOCTL_AGENT_SET_VERDICT, wire.verdict_message(request["request_id"],
                                                                                wire.VERDICT_PERMIT))
    expect_status(verdict["status"], c.STATUS_SUCCESS, "SET_VERDICT permit")
    completed_once_with(h, 1, pended, clone)
    expect(len(wfp.injections) == 1, f"{len(wfp.injections)} injections after a permit, expected 1")
    injection = wfp.injections[0]
    expect(injection["packet"] is clone, "another NET_BUFFER_LIST than the clone was injected")
    expect(list(wfp.injection_handles) == [injection["handle"]],
           f"the clone was injected with {injection['handle']:#x}, not the driver's injection handle")
    reclassified = injection["reclassification"]
    expect(isinstance(reclassified, dict), f"the injected clone was {reclassified}")
    expect_verdict(reclassified, c.FWP_ACTION_PERMIT, True, "classification of the injected clone (our own)")
    expect(injection["freed_by_completion"], f"the injection's completion did not free the clone: "
           f"{clone.describe()}")
    expect(clone.parent.state == "freed", "the engine's packet outlived its last clone")

    udp = Connection(layer_id=c.FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4, local="10.0.0.2", local_port=5353,
                     remote="198.51.100.20", remote_port=5353, protocol=17, process_id=2121, interface_index=12,
                     sub_interface_index=4, payload=b"inbound datagram")
    reply = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    blocked, pended = pend_inbound(h, f, udp, "UDP datagram")
    request = agent_request(reply, f, udp)
    verdict = h.ioctl(agent, wire.IOCTL_AGENT_SET_VERDICT, wire.verdict_message(request["request_id"],
                                                                                wire.VERDICT_BLOCK))
    expect_status(verdict["status"], c.STATUS_SUCCESS, "SET_VERDICT block")
    completed_once_with(h, 2, pended, None)
    expect(len(wfp.injections) == 1, "a blocked connection's clone was injected")
    expect(blocked.state == "freed" and blocked.parent.state == "freed", f"block did not free the clone: "
           f"{blocked.describe()}")
    deleted(h, f, "ask at recv-accept")
    h.cleanup_file(agent)
    h.close_file(agent)
    expect(not packets.by_nbl, f"packets left: {[p.describe() for p in packets.by_nbl.values()]}")
    return ("pended (BLOCK+ABSORB) with a clone made at the IP header, layerData back at its offset; "
            "inbound request; permit: completed with the clone, injected with our handle, the injected clone "
            f"classified {describe(reclassified)} (own injection), freed by the completion; block: completed "
            "with NULL, the clone freed, not injected")


def ask_pend_during_unload(h):
    """Pended operations still in the table when DriverUnload runs are
    completed exactly once, out of band, by unload (issue 15 item 5): never
    from inside classifyFn or notifyFn (FwpsCompleteOperation0 fails the run
    if called from a callout callback).

    The I/O manager calls DriverUnload only once every handle is closed, and
    the last agent's cleanup completes every request; a request is still in
    the table at DriverUnload when a classification raced that cleanup (it
    saw the agent, then filed after the cleanup emptied the table), or a
    pend raced unload itself (the simulated kernel's tests stop a thread
    between the slot's reservation and the filing). The emulator is
    single-threaded, so it reaches that state by unloading with the agent's
    handle still open: one request delivered to the agent, one still
    queued, and one whose filter was deleted (its DELETE, inside notifyFn,
    must leave it for the timer or unload)."""
    agent = h.open_file()
    reply = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    expect(reply["state"] == "parked", "GET_REQUEST with nothing queued is not parked")
    kept = added(h, wire.ask(60_000, wire.VERDICT_PERMIT, "ask-unload"), "ask, default permit")
    gone = added(h, wire.ask(60_000, wire.VERDICT_BLOCK, "ask-deleted"), "ask, default block")
    pended = []
    for f, port in ((kept, 41100), (kept, 41101), (gone, 41102)):
        result = h.classify(f, Connection(local_port=port))
        expect(result["pended"] is not None, f"ask with an agent did not pend: {describe(result)}")
        pended.append(result["pended"])
    expect_status(reply["status"], c.STATUS_SUCCESS, "the parked GET_REQUEST once the first classify pended")
    # Its pended request keeps the filter's context until it is completed.
    expect_status(h.delete_filter(gone), c.STATUS_SUCCESS, "notifyFn DELETE (ask with a pended request)")
    expect(not h.wfp.completions, f"{len(h.wfp.completions)} operation(s) completed before unload (the DELETE "
           "must leave its request to the timer or unload)")
    h.unload(handles_open=True)
    h.close_file(agent)
    h.check_clean()
    h.unloaded = True
    completions = h.wfp.completions
    expect(sorted(x["context"] for x in completions) == sorted(pended),
           f"completed {[hex(x['context']) for x in completions]}, pended {[hex(p) for p in pended]}: each must be "
           "completed exactly once")
    expect(all(x["during"] == "DriverUnload" for x in completions),
           f"completed during {[x['during'] for x in completions]}, expected DriverUnload (out of band)")
    etw_event(h, "Unloaded", c.TRACE_LEVEL_INFORMATION, c.ETW_KEYWORD_LIFECYCLE, [("RequestsCompleted", 3)])
    return ("3 pended (delivered, queued, filter deleted: nothing completed inside notifyFn DELETE); DriverUnload "
            "completed each exactly once, out of band; ETW Unloaded RequestsCompleted 3; nothing left")


def ask_first_datagram(h):
    """An ask at ALE_AUTH_CONNECT_V4 for UDP (issue 15 item 7): the engine
    presents the first datagram as layerData (at its transport header, the
    socket's transportEndpointHandle in the metadata). The driver pends and
    keeps a deep copy from the transport header, the engine's packet back
    where it was passed. On the agent's permit it completes the operation
    once with NULL (a connect's completion takes no list), the
    reauthorization answers PERMIT, and it sends
    the copy exactly once with FwpsInjectTransportSendAsync1 on the
    datagram's socket (sendArgs: the remote address; the datagram's source
    port is the socket's), whose completion frees it; on a block the copy
    is freed and nothing is sent."""
    packets, wfp = h.kernel.packets, h.wfp
    agent = h.open_file()
    f = added(h, wire.ask(30_000, wire.VERDICT_BLOCK, "ask-dns"), "ask")
    outcomes = []
    for port, answer, payload in ((53001, wire.VERDICT_PERMIT, b"\x12\x34 first datagram: a query"),
                                  (53002, wire.VERDICT_BLOCK, b"\x56\x78 blocked datagram")):
        # IP_PKTINFO-like control data (a 28-byte WSACMSGHDR record) with
        # the permitted datagram: the send must carry a copy of it.
        control = b"\x1c" + b"\x00" * 7 + b"\x13\x00\x00\x00" + bytes(range(16)) if answer == wire.VERDICT_PERMIT else b""
        conn = Connection(local="10.0.0.2", local_port=port, remote="192.0.2.53", remote_port=53, protocol=17,
                          process_id=5353, payload=payload, control_data=control)
        reply = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
        expect(reply["state"] == "parked", "GET_REQUEST with nothing queued is not parked")
        before = set(packets.live_clones())
        result = h.classify(f, conn, processor=2)
        expect(result["pended"] is not None, f"UDP ask did not pend: {describe(result)}")
        datagram = result["packet"]
        expect(datagram is not None and datagram.outbound, "the engine presented no first datagram")
        copies = [p for p in packets.live_clones() if p not in before]
        expect(len(copies) == 1 and copies[0].parent is datagram,
               f"{len(copies)} copies of the first datagram, expected 1")
        copy = copies[0]
        udp = 8 + len(payload)
        expect(copy.data_length == udp and h.kernel.read(copy.frame + copy.data_offset, udp)[8:] == payload,
               f"the copy holds {copy.data_length} bytes, not the {udp}-byte datagram from its UDP header")
        expect_status(reply["status"], c.STATUS_SUCCESS, "the parked GET_REQUEST once classify pended")
        request = wire.decode_ask_request(reply["output"])
        expect((request["protocol"], request["direction"], request["local_port"], request["remote_port"]) ==
               (17, 0, port, 53), f"ask request {request}")
        sends_before = [i for i in wfp.injections if i.get("kind") == "send"]
        verdict = h.ioctl(agent, wire.IOCTL_AGENT_SET_VERDICT, wire.verdict_message(request["request_id"], answer))
        expect_status(verdict["status"], c.STATUS_SUCCESS, "SET_VERDICT")
        completion = wfp.completions[-1]
        expect(len(wfp.completions) == len(outcomes) + 1 and completion["context"] == result["pended"],
               f"{len(wfp.completions)} completions, expected {len(outcomes) + 1}")
        expect(completion["net_buffer_list"] == 0, "FwpsCompleteOperation0 at ALE_AUTH_CONNECT took a "
               f"NET_BUFFER_LIST ({completion['net_buffer_list']:#x}): a connect completes with NULL")
        sends = [i for i in wfp.injections if i.get("kind") == "send" and i not in sends_before]
        if answer == wire.VERDICT_PERMIT:
            expect_verdict(completion["reauthorization"], c.FWP_ACTION_PERMIT, True, "reauthorization (permit)")
            expect(len(sends) == 1, f"FwpsInjectTransportSendAsync1 called {len(sends)} times, expected once")
            send = sends[0]
            expect(send["packet"] is copy and send["endpoint"] == wfp.endpoint_of(conn.as_dict()),
                   "another list or another socket than the datagram's was sent")
            expect(send["sent"][8:] == payload, "the datagram sent is not the one the application wrote")
            expect(send["freed_by_completion"], f"the send's completion did not free the copy: {copy.describe()}")
            outcomes.append(f"permit: sent once on endpoint {send['endpoint']:#x} to {send['remote']}:53, "
                            "freed by its completion")
        else:
            expect_verdict(completion["reauthorization"], c.FWP_ACTION_BLOCK, False, "reauthorization (block)")
            expect(not sends, "a blocked connection's datagram was sent")
            outcomes.append("block: nothing sent")
        expect(copy.state == "freed" and datagram.state == "freed",
               f"left: {copy.describe()}, {datagram.describe()}")
    deleted(h, f, "ask")
    h.cleanup_file(agent)
    h.close_file(agent)
    expect(not packets.by_nbl, f"packets left: {[p.describe() for p in packets.by_nbl.values()]}")
    return ("UDP at connect: first datagram as layerData, pended with a copy from its UDP header, completed "
            "with NULL; " + "; ".join(outcomes))


def prepare_load_failure(h):
    """The third FwpsCalloutRegister2 fails: DriverEntry fails."""
    h.load_fails = True
    h.kernel.fail_api["FwpsCalloutRegister2"] = (3, c.STATUS_UNSUCCESSFUL)


def load_failure(h):
    """A failed DriverEntry leaves nothing behind (the I/O manager never
    calls DriverUnload after one): the two callouts registered before the
    failure are unregistered, the control device, never opened to I/O, is
    deleted, the stub unbinds from KMDF."""
    h.driver_entry(expected=c.STATUS_UNSUCCESSFUL)
    wdf = h.kernel.wdf
    expect("WdfControlFinishInitializing" not in wdf.events, f"the device opened although the load failed: "
           f"{wdf.events}")
    expect("WdfObjectDelete" in wdf.events, f"the control device was not deleted: {wdf.events}")
    expect(wdf.unbound, "the stub did not unbind after DriverEntry failed")
    expect(not wdf.unload_ran, "EvtDriverUnload ran after a failed DriverEntry")
    expect(len(h.wfp.unregistered) == 2, f"{len(h.wfp.unregistered)} callouts unregistered, expected the 2 "
           "registered before the failure")
    h.check_clean()
    # The ETW provider said what failed, then went: no registration left.
    etw_event(h, "Error", c.TRACE_LEVEL_ERROR, c.ETW_KEYWORD_LIFECYCLE,
              [("What", "FwpsCalloutRegister2"), ("Status", c.STATUS_UNSUCCESSFUL)])
    expect(not h.kernel.etw_registrations, "the ETW provider is still registered after the failed DriverEntry")
    h.unloaded = True
    return ("third FwpsCalloutRegister2 failed: DriverEntry STATUS_UNSUCCESSFUL, 2 callouts unregistered, control "
            "device deleted unopened, unbound, ETW Error event and provider unregistered, nothing leaked")


def prepare_missing_method(h):
    """The framework binds, but its table lacks WdfTimerStop."""
    h.load_fails = True
    h.kernel.wdf.unbound_entries.add(320)


def missing_method(h):
    """A framework without a method the glue calls: the loader stub refuses
    to run DriverEntry (STATUS_PROCEDURE_NOT_FOUND) and unbinds, instead of
    a NULL call later."""
    h.driver_entry(expected=0xC000007A)
    wdf = h.kernel.wdf
    expect(wdf.events == ["bind", "unbind"], f"KMDF calls: {wdf.events}")
    expect(not h.wfp.callouts and not h.wfp.unregistered, "callouts registered without DriverEntry")
    h.check_clean()
    h.unloaded = True
    return "table entry 320 (WdfTimerStop) NULL: FxDriverEntry STATUS_PROCEDURE_NOT_FOUND, unbound, DriverEntry never ran"


def ask_timeout_timer(h):
    """The KMDF timer ends a request nobody answers: EvtTimerFunc (DISPATCH
    level) completes it with its default verdict once its timeout passed,
    not before."""
    agent = h.open_file()
    parked = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    f = added(h, wire.ask(1_000, wire.VERDICT_PERMIT, "ask-timeout"), "ask")
    result = h.classify(f, Connection())
    expect(result["pended"] is not None and parked["completed"], "ask did not pend and reach the parked IOCTL")
    h.kernel.clock += TICKS_PER_SECOND // 2
    expect(h.fire_timer(), "the timeout timer is not running")
    expect(not h.wfp.completions, "the request timed out before its timeout")
    h.kernel.clock += TICKS_PER_SECOND
    h.fire_timer()
    expect(len(h.wfp.completions) == 1, f"{len(h.wfp.completions)} completions after the timeout, expected 1")
    expect_verdict(h.wfp.completions[0]["reauthorization"], c.FWP_ACTION_PERMIT, True,
                   "reauthorization after the timeout (default permit)")
    deleted(h, f, "ask")
    h.cleanup_file(agent)
    h.close_file(agent)
    return "EvtTimerFunc at +0.5 s: nothing; at +1.5 s: the request completed with its default PERMIT"


def rundown_entry(h, classify_fn):
    """classify_fn's entry into the rundown, found in its machine code: the
    first locked increment after the read of the processor index
    (``gs:[0x1a4]``, whose line it enters), and the instruction after it."""
    instructions = h.function_instructions(classify_fn)
    index_read = next((i for i, insn in enumerate(instructions)
                       if any(op.type == capstone.x86.X86_OP_MEM and op.mem.segment == capstone.x86.X86_REG_GS
                              and op.mem.disp == c.KPCR_PRCB_NUMBER for op in insn.operands)), None)
    expect(index_read is not None, "classify_fn: no read of the processor index (gs:[0x1a4]) in its machine code")
    for i in range(index_read + 1, len(instructions) - 1):
        insn = instructions[i]
        if capstone.x86.X86_PREFIX_LOCK in insn.prefix and insn.mnemonic.split()[-1] in ("inc", "add", "xadd"):
            return insn, instructions[i + 1]
    raise ScenarioFailure("classify_fn: no locked increment (the rundown entry) after the processor index read")


GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


def classify_across_delete(h):
    """A classify of a static block filter paused inside its rundown while
    the filter's DELETE notify and the timer run, then resumed: the driver
    releases the handle at once but must keep the WfFc context until every
    rundown line has been idle since, so the paused classify's line holds
    it (CONFORMANCE N7; tests/classify_across_delete.rs on the host). Twice:
    paused right after entering the rundown (the key not yet read: the
    resumed classify finds the word stale and answers with the word's own
    BLOCK), and paused holding the context's address (key matched, nothing
    counted yet: the resumed classify counts on the context DELETE
    released). Each time the context goes at the next timer tick after
    the classify has left."""
    classify_fn = h.symbol("trampolines", "classify_fn")
    entry, after_entry = rundown_entry(h, classify_fn)
    entered = paused_across_delete(h, classify_fn, entry, after_entry, "entered", "right after the rundown entry",
                                   lambda address, context: address == after_entry.address, processor=0)
    borrowed = paused_across_delete(h, classify_fn, entry, after_entry, "borrowed", "holding the context's address",
                                    lambda address, context: (address > entry.address and
                                                              any(h.se.emu.reg_read(r) == context for r in GPRS)),
                                    processor=2)
    return (f"classify of a block filter paused {entered} / {borrowed}: DELETE + timer meanwhile keep the WfFc "
            "context (handle released); resumed: BLOCK, write right cleared, registers preserved; the next timer "
            "frees the context")


def paused_across_delete(h, classify_fn, entry, after_entry, name, where, condition, processor):
    """One round of ``classify-across-delete``: a block filter added, its
    classify on ``processor`` paused at the first instruction after the
    rundown entry where ``condition(address, context)`` holds, DELETE and
    the timer on the next processor meanwhile, the classify resumed."""
    f = added(h, wire.block(f"across-delete-{name}"), f"block ({name})")
    word = h.filter_context(f)
    context = context_behind(h, word)
    contexts = pool_counts(h).get("WfFc", 0)
    seen = {}

    def stop_here(address):
        # Passing the instruction after the entry, the registers still name
        # the line it entered: noted for the checks.
        if address == after_entry.address:
            seen["line"] = h.memory_operand(entry)
        return condition(address, context)

    def while_paused(paused):
        line = seen.get("line")
        expect(line is not None, f"{name}: paused at {h.name_of(paused.address)} before the rundown entry")
        inside = h.kernel.read_u64(line, "rundown line") & ~(1 << 63)
        expect(inside == 1, f"{name}: paused in classify_fn at {h.name_of(paused.address)}, its rundown line "
               f"{line:#x} counts {inside}, expected the classify alone")
        seen["address"] = paused.address
        h.kernel.processor = paused.processor + 1
        status = h.delete_filter(f, classify_running=True)
        expect_status(status, c.STATUS_SUCCESS, f"notifyFn DELETE while a classify is paused ({name})")
        expect(context_behind(h, word) is None,
               f"{name}: after DELETE the word {word:#x} still names a live slot (the handle was not released)")
        for when in ("after DELETE", "after the timer"):
            block = h.kernel.pool.get(context)
            expect(block is not None and tag_name(block.tag) == "WfFc" and pool_counts(h).get("WfFc", 0) == contexts,
                   f"{name}: the filter context {context:#x} (WfFc) was freed {when} while a classify paused "
                   f"inside the rundown ({h.name_of(paused.address)}) may still use it")
            if when == "after DELETE":
                expect(h.fire_timer(), "the timer is not running")

    h.pause_in(classify_fn, stop_here, while_paused)
    result = h.classify(f, Connection(local_port=51000 + processor), processor=processor)
    expect("address" in seen, f"{name}: the classify never reached the pause ({where})")
    h.release_filter_memory(f)
    expect_verdict(result, c.FWP_ACTION_BLOCK, False, f"the classify resumed after its filter's DELETE ({name})")
    inside = h.kernel.read_u64(seen["line"], "rundown line") & ~(1 << 63)
    expect(inside == 0, f"{name}: the resumed classify left its rundown line counting {inside}")
    expect(context in h.kernel.pool, f"{name}: the context went before the timer ran again")
    h.fire_timer()
    expect(context not in h.kernel.pool and pool_counts(h).get("WfFc", 0) == contexts - 1,
           f"{name}: the timer after the classify left did not free the deleted filter's context {context:#x}")
    return f"{where} ({h.name_of(seen['address'])})"


def pend_inbound(h, f, conn, what):
    """Classify ``conn`` at recv-accept with an agent connected: it pends,
    one clone of the engine's packet exists, made at the IP header, and the
    engine's packet is back at the beginning of the data. Returns the
    clone and the completion context."""
    before = set(h.kernel.packets.live_clones())
    result = h.classify(f, conn, processor=1)
    expect(result["pended"] is not None, f"{what}: ask at recv-accept did not pend: {describe(result)}")
    packet = result["packet"]
    clones = [p for p in h.kernel.packets.live_clones() if p not in before]
    expect(len(clones) == 1 and clones[0].parent is packet,
           f"{what}: {len(clones)} clone(s) of the pended packet, expected 1")
    clone = clones[0]
    expect(clone.data_offset == MAC_HEADER, f"{what}: the clone was made at data offset {clone.data_offset}, "
           f"not at the IP header ({MAC_HEADER})")
    beginning_of_data = MAC_HEADER + packet.ip_header + packet.transport_header
    expect(packet.data_offset == beginning_of_data, f"{what}: the engine's packet is at data offset "
           f"{packet.data_offset}, passed at {beginning_of_data}")
    expect(packet.state == "released" and packet.children == 1,
           f"{what}: the engine's packet should be kept for its one clone: {packet.describe()}")
    return clone, result["pended"]


def agent_request(reply, f, conn):
    """The parked GET_REQUEST, completed by classify's hook: the pended
    connection, inbound, as recv-accept saw it."""
    expect_status(reply["status"], c.STATUS_SUCCESS, "parked GET_REQUEST once the inbound request was queued")
    request = wire.decode_ask_request(reply["output"])
    expected = {"filter_id": f.id, "process_id": conn.process_id, "layer_id": c.FWPS_LAYER_ALE_AUTH_RECV_ACCEPT_V4,
                "direction": 1, "ip_version": 4, "protocol": conn.protocol, "local_address": conn.local,
                "local_port": conn.local_port, "remote_address": conn.remote, "remote_port": conn.remote_port}
    for key, value in expected.items():
        expect(request[key] == value, f"inbound ask request {key}: {request[key]!r}, expected {value!r}")
    return request


def completed_once_with(h, count, pended, clone):
    """The verdict completed the pended operation once, with the clone it
    injects (``clone``), or with NULL (``None``: a denied connection)."""
    completions = h.wfp.completions
    expect(len(completions) == count, f"{len(completions)} completions, expected {count}")
    expect(completions[-1]["context"] == pended, "completed another operation than the one pended")
    expected = clone.nbl if clone is not None else 0
    expect(completions[-1]["net_buffer_list"] == expected,
           f"FwpsCompleteOperation0 took NET_BUFFER_LIST {completions[-1]['net_buffer_list']:#x}, not "
           f"{expected:#x}")


def etw_event(h, name, level, keyword, fields):
    """The one event called `name` since the last check, from our provider,
    with exactly these fields in this order."""
    found = [e for e in h.kernel.etw_events if e["name"] == name]
    expect(len(found) == 1, f"ETW: {len(found)} {name} events, expected 1: {found}")
    event = found[0]
    expect(event["provider"] == c.ETW_PROVIDER_NAME and event["guid"] == c.tracelogging_guid(c.ETW_PROVIDER_NAME),
           f"ETW {name}: provider {event['provider']!r} {event['guid']}")
    expect((event["level"], event["keyword"], event["id"], event["opcode"]) == (level, keyword, 0, 0),
           f"ETW {name}: level {event['level']} keyword {event['keyword']:#x} id {event['id']} "
           f"opcode {event['opcode']}")
    expect(event["fields"] == fields, f"ETW {name}: fields {event['fields']}, expected {fields}")
    h.kernel.etw_events.remove(event)
    return event


def etw_events(h):
    """The TraceLogging provider, from the machine code: registered under the
    name's hash GUID with its traits, each event decoded from its metadata."""
    k = h.kernel
    guid = c.tracelogging_guid(c.ETW_PROVIDER_NAME)
    registrations = list(k.etw_registrations.values())
    expect(len(registrations) == 1 and registrations[0]["guid"] == guid
           and registrations[0]["name"] == c.ETW_PROVIDER_NAME and registrations[0]["callback"] == 0,
           f"ETW registrations {registrations}, expected {c.ETW_PROVIDER_NAME} {guid} with its traits")
    lifecycle, verdicts, asks, filters = (c.ETW_KEYWORD_LIFECYCLE, c.ETW_KEYWORD_VERDICTS, c.ETW_KEYWORD_ASKS,
                                          c.ETW_KEYWORD_FILTERS)
    etw_event(h, "Loaded", c.TRACE_LEVEL_INFORMATION, lifecycle, [("CalloutsRegistered", 6), ("FiltersAdopted", 0)])

    audit = added(h, wire.audit("audit-dns"), "audit")
    expect_verdict(h.classify(audit, Connection(remote_port=53, protocol=17)), c.FWP_ACTION_PERMIT, True, "audit")
    etw_event(h, "Verdict", c.TRACE_LEVEL_VERBOSE, verdicts,
              [("FilterId", audit.id), ("LayerId", c.FWPS_LAYER_ALE_AUTH_CONNECT_V4), ("Action", "permit"),
               ("Policy", "audit"), ("Label", "audit-dns")])

    vetoed = h.make_filter(wire.policy_blob(wire.ACTION_BLOCK, magic=b"XXXX"))
    expect_status(h.add_filter(vetoed), c.STATUS_BAD_DATA, "notifyFn ADD of a bad blob")
    etw_event(h, "FilterVetoed", c.TRACE_LEVEL_WARNING, filters,
              [("FilterId", vetoed.id), ("Status", c.STATUS_BAD_DATA)])

    agent = h.open_file()
    reply = h.ioctl(agent, wire.IOCTL_AGENT_GET_REQUEST, output_length=wire.ASK_REQUEST_LEN)
    ask = added(h, wire.ask(30_000, wire.VERDICT_BLOCK, "ask-web"), "ask")
    result = h.classify(ask, Connection(local_port=50123, remote_port=8443))
    expect(result["pended"] is not None and reply["completed"], "ask with a parked agent did not pend")
    request = wire.decode_ask_request(reply["output"])
    etw_event(h, "Pended", c.TRACE_LEVEL_INFORMATION, asks,
              [("RequestId", request["request_id"]), ("FilterId", ask.id), ("Direction", "outbound"),
               ("Protocol", 6), ("LocalPort", 50123), ("RemotePort", 8443), ("Label", "ask-web")])
    answer = h.ioctl(agent, wire.IOCTL_AGENT_SET_VERDICT, wire.verdict_message(request["request_id"],
                                                                               wire.VERDICT_PERMIT))
    expect_status(answer["status"], c.STATUS_SUCCESS, "SET_VERDICT permit")
    etw_event(h, "Completed", c.TRACE_LEVEL_INFORMATION, asks,
              [("RequestId", request["request_id"]), ("FilterId", ask.id), ("Protocol", 6), ("LocalPort", 50123), ("RemotePort", 8443),
               ("Verdict", "permit"), ("Why", "agent")])

    # With no session listening the driver asks and writes nothing.
    writes = k.api_counts["EtwWriteTransfer"]
    asked = k.api_counts["EtwProviderEnabled"]
    k.etw_session = None
    expect_verdict(h.classify(audit, Connection(remote_port=53, protocol=17)), c.FWP_ACTION_PERMIT, True, "audit")
    expect(k.api_counts["EtwProviderEnabled"] == asked + 1 and k.api_counts["EtwWriteTransfer"] == writes,
           "with no session: one EtwProviderEnabled, no EtwWriteTransfer")
    k.etw_session = (c.TRACE_LEVEL_VERBOSE, 0)

    deleted(h, audit, "audit")
    deleted(h, ask, "ask")
    h.cleanup_file(agent)
    h.close_file(agent)
    expect(not k.etw_events, f"ETW: unexpected events {k.etw_events}")
    h.unload_and_check()
    etw_event(h, "Unloaded", c.TRACE_LEVEL_INFORMATION, lifecycle, [("RequestsCompleted", 0)])
    expect(not k.etw_registrations, "ETW provider still registered after unload")
    return (f"provider {c.ETW_PROVIDER_NAME} {{{guid}}} with traits; Loaded, Verdict (audit), FilterVetoed "
            "(STATUS_BAD_DATA), Pended, Completed (agent), Unloaded decoded field by field from the TraceLogging "
            "metadata; no session: EtwProviderEnabled only")


SCENARIOS = [
    ("load-unload", load_unload, None),
    ("permit", permit, None),
    ("block", block, None),
    ("audit", audit, None),
    ("rate-limit", rate_limit, None),
    ("ask-without-agent", ask_without_agent, None),
    ("delete-unknown-filter", delete_unknown, None),
    ("malformed-policy-veto", malformed_policy, None),
    ("adopt-preexisting", adopt_preexisting, prepare_adoption),
    ("ask-pend-permit", ask_pend_permit, None),
    ("ask-agent-gone", ask_agent_gone, None),
    ("ioctl-buffers", ioctl_buffers, None),
    ("pool-exhausted", pool_exhausted, None),
    ("unload-with-live-state", unload_with_live_state, None),
    ("unload-busy-unregister", unload_busy_unregister, None),
    ("flow-established", flow_established, None),
    ("reauthorize-policy-change", reauthorize_policy_change, None),
    ("ask-recv-accept", ask_recv_accept, None),
    ("load-failure", load_failure, prepare_load_failure),
    ("ask-timeout-timer", ask_timeout_timer, None),
    ("missing-method", missing_method, prepare_missing_method),
    ("etw-events", etw_events, None),
    ("ask-pend-during-unload", ask_pend_during_unload, None),
    ("ask-first-datagram", ask_first_datagram, None),
    ("classify-across-delete", classify_across_delete, None),
]


def run_scenario(name, body, prepare, image, link_map, printer):
    """Fresh emulator, DriverEntry, the scenario, DriverUnload, the
    end-of-run checks. Returns (summary, harness)."""
    h = Harness(image, link_map, printer=printer)

    def unload_and_check():
        h.unload()
        h.check_clean()
        h.unloaded = True

    h.unload_and_check = unload_and_check
    h.unloaded = False
    h.load_fails = False
    if prepare is not None:
        prepare(h)
    if not h.load_fails:
        h.driver_entry()
    summary = body(h)
    if not h.unloaded:
        unload_and_check()
    return summary, h
