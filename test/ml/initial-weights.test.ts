import { strict as assert } from 'node:assert';
import { InvalidInitialWeightsError, loadInitialWeights } from '../../src/ml/initial-weights';
import { saveModelToS3 } from '../../src/ml/model-store';
import { buildBasicCnn, buildResNet50 } from '../../src/ml/models';
import { loadTf } from '../../src/ml/tf';
import { testS3, uniqueBucket } from '../helpers/services';
import { useTestStack } from '../helpers/global';

useTestStack();

describe('initial weights from S3 (SeaweedFS)', () => {
  const s3 = testS3();
  const bucket = uniqueBucket('weights');
  const uri = `s3://${bucket}/resnet50`;

  before(async () => {
    await s3.ensureBucket(bucket);
    const source = buildResNet50({ imageSize: 32, numClasses: 2, seed: 1 });
    await saveModelToS3(s3, source, uri, { modelClass: 'ResNet50', classes: ['a', 'b'], imageSize: 32, inputScale: '0-1' });
    source.dispose();
  });

  it('loads every tensor into the same architecture, and keeps a fresh head for another class count', async () => {
    const tf = loadTf();
    const source = buildResNet50({ imageSize: 32, numClasses: 2, seed: 1 }).getWeights();
    const target = buildResNet50({ imageSize: 32, numClasses: 3, seed: 99 });
    const fresh = target.getWeights().map((t) => t.clone());
    const { loaded, kept } = await loadInitialWeights(s3, uri, target);
    assert.equal(kept.length, 2, `kept ${kept.join(', ')}`);
    assert.equal(loaded, target.weights.length - 2);
    const after = target.getWeights();
    const head = new Set(target.layers.at(-1)!.weights.map((w) => w.originalName));
    target.weights.forEach((w, i) => {
      const expected = head.has(w.originalName) ? fresh[i]! : source[i]!;
      assert.equal(tf.max(tf.abs(tf.sub(after[i]!, expected))).dataSync()[0], 0, `${w.originalName}`);
    });
    target.dispose();
  });

  it('refuses weights of another architecture, saying which tensor does not fit', async () => {
    const basic = buildBasicCnn({ imageSize: 32, numClasses: 2, seed: 1 });
    await assert.rejects(
      loadInitialWeights(s3, uri, basic),
      (e: Error) => e instanceof InvalidInitialWeightsError && /same architecture/.test(e.message),
    );
    basic.dispose();
  });

  it('refuses weights holding NaN or infinity, saying which tensor', async () => {
    const tf = loadTf();
    const corrupt = buildBasicCnn({ imageSize: 16, numClasses: 2, seed: 1 });
    const weights = corrupt.getWeights();
    corrupt.setWeights(
      weights.map((w, i) => (i === 2 ? tf.tidy(() => w.where(tf.range(0, w.size).reshape(w.shape).notEqual(5), NaN)) : w)),
    );
    const at = `s3://${bucket}/corrupt`;
    await saveModelToS3(s3, corrupt, at, { modelClass: 'Basic', classes: ['a', 'b'], imageSize: 16, inputScale: '0-1' });
    const target = buildBasicCnn({ imageSize: 16, numClasses: 2, seed: 2 });
    await assert.rejects(
      loadInitialWeights(s3, at, target),
      (e: Error) =>
        e instanceof InvalidInitialWeightsError && /tensor 2 \(.*\) holds 1 value\(s\) that are NaN or infinite/.test(e.message),
    );
    corrupt.dispose();
    target.dispose();
  });

  it('says so when the prefix holds no model', async () => {
    const model = buildResNet50({ imageSize: 32, numClasses: 2, seed: 1 });
    await assert.rejects(loadInitialWeights(s3, `s3://${bucket}/nothing`, model), /nothing\/model\.json does not exist/);
    model.dispose();
  });
});
