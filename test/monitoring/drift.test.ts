/**
 * Drift (src/monitoring/drift.ts): the PSI itself, and the whole path on real parts. An inference
 * server (the real HTTP server and engine) predicts on synthetic lesions and writes its drift sample
 * to S3 (SeaweedFS); measureDrift compares it with the preprocessed training data. Images like the
 * training data stay under the threshold; the same images with their colours shifted go above it.
 */
import { strict as assert } from 'node:assert';
import type { AddressInfo } from 'node:net';
import { createDriftActivities } from '../../src/activities/drift';
import { buildBasicCnn } from '../../src/ml/models';
import { addImages, compareProfiles, DRIFT_BINS, emptyProfile, psi } from '../../src/monitoring/drift';
import { DriftRecorder } from '../../src/serving/drift-recorder';
import { ModelEngine } from '../../src/serving/engine';
import { createInferenceServer } from '../../src/serving/server';
import { parseS3Uri } from '../../src/storage/s3';
import { useTestStack } from '../helpers/global';
import { lesionInstances, SHIFTED_COLOURS } from '../helpers/images';
import { runActivity, smallPreparedDataset, testS3, uniqueBucket } from '../helpers/services';

describe('drift figures', () => {
  it('PSI is about 0 for the same shares, grows with the shift, and stays finite for empty bins', () => {
    assert.ok(psi([10, 20, 30], [20, 40, 60]) < 1e-3);
    const small = psi([50, 50], [55, 45]);
    const large = psi([50, 50], [90, 10]);
    assert.ok(small > 0 && small < 0.05, `${small}`);
    assert.ok(large > 0.5, `${large}`);
    assert.ok(Number.isFinite(psi([100, 0], [0, 100])));
  });

  it("bins each image's channel means, and compares class shares by name", () => {
    const profile = emptyProfile();
    // Two 1-pixel images: (0.05, 0.5, 0.95) and (0.15, 0.5, 1.0).
    addImages(profile, new Float32Array([0.05, 0.5, 0.95, 0.15, 0.5, 1.0]), 2, 1, ['a', 'b']);
    assert.deepEqual(
      profile.channelMeans.map((bins) => bins.flatMap((n, i) => (n ? [`${i}:${n}`] : []))),
      [['0:1', '1:1'], ['5:2'], [`9:2`]],
    );
    assert.equal(profile.channelMeans[0]!.length, DRIFT_BINS);
    assert.deepEqual(profile.classes, { a: 1, b: 1 });
    const figures = compareProfiles(profile, profile, ['a', 'b']);
    assert.deepEqual([figures.psi, figures.images], [0, 2]);
  });
});

describe('drift on a real server and S3', function () {
  this.timeout(180_000);
  useTestStack();
  const s3 = testS3();
  const SIZE = 16;

  it("a server's sample of images like the training data stays under 0.2; the same images with shifted colours go above it", async () => {
    const dataset = await smallPreparedDataset(s3);
    const bucket = uniqueBucket('drift');
    await s3.ensureBucket(bucket);
    const root = `s3://${bucket}/drift-samples`;
    const recorder = new DriftRecorder(s3, { prefixUri: `${root}/skin/`, flushSeconds: 3600 });
    const engine = new ModelEngine(
      {
        model: buildBasicCnn({ imageSize: SIZE, numClasses: 2, seed: 1 }),
        metadata: { modelClass: 'Basic', classes: dataset.classes, imageSize: SIZE, inputScale: '0-1' },
        info: { name: 'skin', version: '1', modelUri: 's3://b/m/1' },
      },
      { observe: (pixels, n, size, labels, info) => recorder.observe(pixels, n, size, labels, { name: info.name, version: info.version }) },
    );
    const { server } = createInferenceServer(engine);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/invocations`;
    const invoke = async (instances: number[][][][]) => {
      for (let i = 0; i < instances.length; i += 20) {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ instances: instances.slice(i, i + 20) }),
        });
        assert.equal(res.status, 200, await res.text());
      }
      await recorder.flush();
    };
    const measure = (since: string, until: string) =>
      runActivity(createDriftActivities({ store: s3, sampleUri: root }).measureDrift, [
        { endpointName: 'skin', manifestUri: dataset.manifestUri, since, until },
      ]);
    try {
      const t0 = new Date(Date.now() - 1000).toISOString();
      await invoke(lesionInstances(200, SIZE, 5000));
      const t1 = new Date().toISOString();
      const steady = await measure(t0, t1);
      assert.ok(steady.figures, JSON.stringify(steady));
      assert.equal(steady.figures.images, 200);
      assert.ok(steady.figures.psi < 0.2, `like the training data: ${JSON.stringify(steady.figures)}`);

      await invoke(lesionInstances(200, SIZE, 9000, SHIFTED_COLOURS));
      const t2 = new Date(Date.now() + 1000).toISOString();
      const shifted = await measure(t1, t2);
      assert.equal(shifted.figures!.images, 200, 'only the window after t1');
      assert.ok(shifted.figures!.psi > 0.2, `shifted colours: ${JSON.stringify(shifted.figures)}`);
      assert.ok(shifted.figures!.features.blue > 0.2 || shifted.figures!.features.red > 0.2);

      // The training data's profile was kept beside its manifest, and nothing but batches was written.
      const { key } = parseS3Uri(dataset.manifestUri.replace(/[^/]+$/, 'drift-reference.json'));
      assert.ok(await s3.exists(`s3://${parseS3Uri(dataset.manifestUri).bucket}/${key}`));
      const batches = await s3.list(`${root}/skin/`);
      assert.equal(batches.length, 2);
      assert.match(batches[0]!.key, /^drift-samples\/skin\/\d{4}-\d{2}-\d{2}\/\d{4}-\d{2}-\d{2}T[\d:.]+Z-[0-9a-f]{8}\.json$/);
      const none = await measure(t2, new Date(Date.now() + 2000).toISOString());
      assert.match(none.unavailable ?? '', /no image was predicted on/);
    } finally {
      server.close();
      await recorder.close();
    }
  });

  it('without DRIFT_SAMPLE_URI the measurement says so', async () => {
    const answer = await runActivity(createDriftActivities({ store: s3 }).measureDrift, [
      { endpointName: 'x', manifestUri: 's3://nowhere/m.json', since: new Date().toISOString(), until: new Date().toISOString() },
    ]);
    assert.match(answer.unavailable!, /DRIFT_SAMPLE_URI is not set on the ml-pipeline worker/);
  });
});
