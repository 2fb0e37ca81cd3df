// A dapp's view of Trainet, written with @polkadot/api as any polkadot.js user would: connect
// to a node, find the protocol pallets in its metadata, post a training task as Alice, follow
// it through its events, and read it back through storage and the node's custom RPC.
//
//   node client.mjs ws://127.0.0.1:9944
//
// Prints what it checked, one line each; exits 0 when everything held, 1 (with the reason on
// stderr) otherwise. tests/tests/polkadot_js.rs runs it against a fresh dev node.

import { ApiPromise, WsProvider } from '@polkadot/api';
import { Keyring } from '@polkadot/keyring';

const url = process.argv[2] ?? 'ws://127.0.0.1:9944';

function check(condition, what) {
	if (!condition) throw new Error(`check failed: ${what}`);
	console.log(`ok: ${what}`);
}

// The chain keeps a spec's floats as their IEEE-754 bits (`F32Bits`), so that nothing is
// rounded between the submitter and the workers.
function f32Bits(value) {
	const view = new DataView(new ArrayBuffer(4));
	view.setFloat32(0, value);
	return view.getUint32(0);
}

async function main() {
	const provider = new WsProvider(url);
	const api = await ApiPromise.create({ provider, noInitWarn: true });
	const [chain, version] = await Promise.all([api.rpc.system.chain(), api.rpc.system.version()]);
	console.log(`connected to ${chain} (trainet-node ${version}) at ${url}`);

	// The protocol pallets, as the metadata describes them.
	for (const pallet of ['taskEscrow', 'computeStaking', 'challenge', 'slashing']) {
		check(api.query[pallet] !== undefined || api.tx[pallet] !== undefined,
			`the metadata has the ${pallet} pallet`);
	}
	check(typeof api.tx.taskEscrow.submit === 'function', 'taskEscrow.submit is a call');
	check(typeof api.query.taskEscrow.tasks === 'function', 'taskEscrow.tasks is a storage map');
	check(api.events.taskEscrow.TaskSubmitted !== undefined, 'taskEscrow.TaskSubmitted is an event');
	const decimals = api.registry.chainDecimals[0];
	const symbol = api.registry.chainTokens[0];
	check(decimals === 12 && symbol === 'TNET', `the token is ${symbol} with ${decimals} decimals`);

	// Post a task as a dapp would: the spec as a plain object, typed by the metadata.
	const alice = new Keyring({ type: 'sr25519' }).addFromUri('//Alice');
	const spec = {
		model: { Mlp: { widths: [16, 8, 4], activation: 'Relu' } },
		loss: 'SoftmaxCrossEntropy',
		optimizer: { Sgd: { learningRate: f32Bits(0.05), momentum: f32Bits(0.9) } },
		batchSize: 8,
		steps: 20,
		checkpointInterval: 4,
		seed: 42,
		dataset: {
			root: `0x${'ab'.repeat(32)}`,
			samples: 200,
			features: 16,
			classes: 4,
			manifest: `0x${'cd'.repeat(32)}`,
		},
	};
	const reward = 10n * 10n ** BigInt(decimals);
	const timeouts = { claim: 100, commit: 100, challenge: 20 };
	const nextId = (await api.query.taskEscrow.nextTaskId()).toNumber();

	// Subscribe to the chain's events before submitting, as a dapp showing progress would.
	const seen = [];
	const unsubscribe = await api.query.system.events((records) => {
		for (const { event } of records) {
			if (event.section === 'taskEscrow') seen.push(`${event.section}.${event.method}`);
		}
	});

	const submitted = await new Promise((resolve, reject) => {
		api.tx.taskEscrow.submit(spec, reward, timeouts)
			.signAndSend(alice, ({ status, events, dispatchError }) => {
				if (dispatchError) {
					const why = dispatchError.isModule
						? (({ section, name }) => `${section}.${name}`)(api.registry.findMetaError(dispatchError.asModule))
						: dispatchError.toString();
					reject(new Error(`submit failed: ${why}`));
				} else if (status.isInBlock) {
					const ev = events.find(({ event }) => api.events.taskEscrow.TaskSubmitted.is(event));
					if (ev) resolve({ block: status.asInBlock.toHex(), event: ev.event });
					else reject(new Error('in a block, but no TaskSubmitted event'));
				}
			})
			.catch(reject);
	});
	const id = nextId;
	console.log(`task ${id} submitted in block ${submitted.block}: ${submitted.event.data.toString()}`);
	check(submitted.event.data[0].toNumber() === id, `the TaskSubmitted event names task ${id}`);
	check(submitted.event.data[1].toString() === alice.address, 'and Alice as its submitter');
	check(submitted.event.data[2].toBigInt() === reward, 'and the reward');

	// Read it back from storage, decoded by the metadata's types.
	const stored = await api.query.taskEscrow.tasks(id);
	check(stored.isSome, `taskEscrow.tasks(${id}) holds the task`);
	const task = stored.unwrap().toJSON();
	check(task.spec.steps === 20 && task.spec.batchSize === 8 && task.spec.seed === 42
		&& task.spec.checkpointInterval === 4, 'the stored spec is the one submitted');
	check(task.spec.optimizer.sgd.learningRate === f32Bits(0.05),
		'the learning rate kept its exact bits');
	check(BigInt(task.reward) === reward, 'the reward is held in full');
	check(task.state.open !== undefined, 'the task is open');

	// And through the node's custom RPC (JSON for dapps that do not decode SCALE).
	const viaRpc = await provider.send('trainet_task', [id]);
	check(viaRpc !== null && viaRpc.state.status === 'open', 'trainet_task shows it open');
	check(viaRpc.spec.steps === 20 && viaRpc.spec.checkpointInterval === 4,
		'trainet_task shows its spec');

	// The reward is held from Alice's balance (a hold, shown as reserved).
	const account = await api.query.system.account(alice.address);
	check(account.data.reserved.toBigInt() >= reward, 'the reward shows as held on Alice');

	// The subscription saw the event too.
	for (let i = 0; i < 50 && !seen.includes('taskEscrow.TaskSubmitted'); i += 1) {
		await new Promise((r) => setTimeout(r, 200));
	}
	check(seen.includes('taskEscrow.TaskSubmitted'), 'the events subscription saw TaskSubmitted');
	unsubscribe();
	await api.disconnect();
}

main().then(
	() => process.exit(0),
	(e) => {
		console.error(e.message ?? e);
		process.exit(1);
	},
);
