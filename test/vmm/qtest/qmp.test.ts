// QMP sessions (docs/reference/qtest-qmp.md §2): the replies and events QEMU 11.1 sends for the
// same requests (observed with -qmp stdio), and cmdqv's x-query-cmdqv.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { qmpSession, type RunState } from '../../../src/platform/controllers.js';
import { Machine } from '../../../src/platform/machine.js';

function rig(run: RunState = 'prelaunch') {
  const m = Machine.create([]);
  const out: string[] = [];
  let quits = 0;
  const state = { run };
  const s = qmpSession(m, state, (t) => out.push(t.replace(/\n$/, '')), () => quits++, () => 1_795_860_389_285_776);
  const ask = (text: string): string[] => {
    out.length = 0;
    s.receive(text);
    return [...out];
  };
  return { m, s, ask, state, quits: () => quits, out };
}

const TS = '"timestamp": {"seconds": 1795860389, "microseconds": 285776}';

describe('QMP', () => {
  test('greeting, negotiation, and the run-state commands with their events', () => {
    const { s, ask, out } = rig();
    s.greet();
    assert.deepEqual(out, ['{"QMP": {"version": {"qemu": {"micro": 0, "minor": 1, "major": 11}, "package": "cmdqv"}, "capabilities": ["oob"]}}']);
    assert.deepEqual(ask('{"execute":"query-status","id":1}'), ['{"id": 1, "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with \'qmp_capabilities\'"}}']);
    assert.deepEqual(ask('{"execute":"qmp_capabilities","id":"a"}'), ['{"return": {}, "id": "a"}']);
    assert.deepEqual(ask('{"execute":"qmp_capabilities"}'), ['{"error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}}']);
    assert.deepEqual(ask('{"execute":"query-status"}'), ['{"return": {"status": "prelaunch", "running": false}}']);
    assert.deepEqual(ask('{"execute":"cont"}'), [`{${TS}, "event": "RESUME"}`, '{"return": {}}']);
    assert.deepEqual(ask('{"execute":"query-status"}'), ['{"return": {"status": "running", "running": true}}']);
    assert.deepEqual(ask('{"execute":"stop"}'), [`{${TS}, "event": "STOP"}`, '{"return": {}}']);
    assert.deepEqual(ask('{"execute":"stop"}'), ['{"return": {}}'], 'already paused: no event');
    assert.deepEqual(ask('{"execute":"query-status"}'), ['{"return": {"status": "paused", "running": false}}']);
    assert.deepEqual(ask('{"execute":"system_reset"}'), [`{${TS}, "event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}}`, '{"return": {}}']);
  });

  test('bad requests get QEMU\'s error classes and texts', () => {
    const { ask } = rig();
    ask('{"execute":"qmp_capabilities"}');
    assert.deepEqual(ask('{"execute":"query-status","arguments":{"x":1}}'), ['{"error": {"class": "GenericError", "desc": "Parameter \'x\' is unexpected"}}']);
    assert.deepEqual(ask('{"foo":1}'), ['{"error": {"class": "GenericError", "desc": "QMP input member \'foo\' is unexpected"}}']);
    assert.deepEqual(ask('["x"]'), ['{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}']);
    assert.deepEqual(ask('{"execute":"nope","id":5}'), ['{"id": 5, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}']);
    assert.deepEqual(ask('{"execute":"query-status","arguments":[]}'), ['{"error": {"class": "GenericError", "desc": "QMP input member \'arguments\' must be an object"}}']);
    assert.deepEqual(ask('{"execute":5}'), ['{"error": {"class": "GenericError", "desc": "QMP input member \'execute\' must be a string"}}']);
    assert.match(ask('{"execute": tru}')[0]!, /^\{"error": \{"class": "GenericError", "desc": "JSON parse error, /);
    assert.deepEqual(ask('{"execute":"query-status"}'), ['{"return": {"status": "prelaunch", "running": false}}'], 'the session goes on');
  });

  test('requests split across chunks, several per chunk, braces inside strings', () => {
    const { ask } = rig();
    assert.deepEqual(ask('{"execute":"qmp_capa'), []);
    assert.deepEqual(ask('bilities","id":"}{"}{"execute":"query-version"}\n'), ['{"return": {}, "id": "}{"}', '{"return": {"qemu": {"micro": 0, "minor": 1, "major": 11}, "package": "cmdqv"}}']);
  });

  test('quit: SHUTDOWN, the reply, then the process ends', () => {
    const { ask, quits } = rig();
    ask('{"execute":"qmp_capabilities"}');
    assert.deepEqual(ask('{"execute":"quit","id":9}'), [`{${TS}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}}`, '{"return": {}, "id": 9}']);
    assert.equal(quits(), 1);
  });

  test('x-query-cmdqv shows the CMDQV, its VCMDQs and the exit counters', () => {
    const { ask } = rig();
    ask('{"execute":"qmp_capabilities"}');
    const r = JSON.parse(ask('{"execute":"x-query-cmdqv"}')[0]!) as { return: { smmus: { id: string; cmdqv: { vcmdqs: unknown[]; base: number } }[]; 'vm-exits': number } };
    assert.equal(r.return.smmus.length, 1);
    assert.equal(r.return.smmus[0]!.id, 'smmuv3.0');
    assert.equal(r.return.smmus[0]!.cmdqv.base, 0x0c08_0000);
    assert.equal(r.return.smmus[0]!.cmdqv.vcmdqs.length, 2);
    assert.equal(typeof r.return['vm-exits'], 'number');
    assert.deepEqual(ask('{"execute":"x-query-cmdqv","arguments":{"a":1}}'), ['{"error": {"class": "GenericError", "desc": "Parameter \'a\' is unexpected"}}']);
    const cmds = JSON.parse(ask('{"execute":"query-commands"}')[0]!) as { return: { name: string }[] };
    assert.ok(cmds.return.some((c) => c.name === 'x-query-cmdqv'));
  });
});
