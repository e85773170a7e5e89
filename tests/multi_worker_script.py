"""One worker of the MultiWorkerMirroredStrategy test (run by test_distributed.py).

Keras 3.15's `model.fit` cannot run under MultiWorkerMirroredStrategy: its first
step reduces a `PerReplica` data batch eagerly and fails
(keras-team/keras#20585, tensorflow/tensorflow#72388). Multi-worker users of Keras 3
therefore train with a custom loop; this worker does the same and drives
keras_reg's EarlyStopping through the callback API, as such a loop would.

Usage: KERAS_BACKEND=tensorflow TF_CONFIG=... python multi_worker_script.py OUTPUT_DIR
"""

import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

import keras_reg

strategy = tf.distribute.MultiWorkerMirroredStrategy()
task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
out_dir = sys.argv[1]
GLOBAL_BATCH = 16
rng = np.random.default_rng(0)
x = rng.normal(size=(128, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1).astype("int32")


def make_dataset(xs, ys):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    ds = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(GLOBAL_BATCH)
    return strategy.experimental_distribute_dataset(ds.with_options(options))


regs = keras_reg.regularizers
with strategy.scope():
    model = keras.Sequential(
        [
            keras.Input(shape=(8,)),
            keras.layers.Dense(
                16,
                kernel_regularizer=regs.ElasticNet(l1=1e-4, l2=1e-4),
                bias_regularizer=regs.L2(1e-4),
            ),
            keras_reg.layers.BatchNormalization(synchronized=True),
            keras_reg.layers.Dropout(0.2, seed=1),
            keras.layers.Dense(3, kernel_regularizer=regs.L1(1e-4)),
        ]
    )
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(model.trainable_variables)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)


@tf.function
def train_step(xb, yb):
    def step(xb, yb):
        with tf.GradientTape() as tape:
            per_example = loss_fn(yb, model(xb, training=True))
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=GLOBAL_BATCH
            )
            loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))

    strategy.run(step, args=(xb, yb))


@tf.function
def val_step(xb, yb):
    def step(xb, yb):
        return tf.reduce_sum(loss_fn(yb, model(xb, training=False)))

    return strategy.reduce("SUM", strategy.run(step, args=(xb, yb)), axis=None)


train_data = make_dataset(x[32:], y[32:])
val_data = make_dataset(x[:32], y[:32])
stopper = keras_reg.callbacks.EarlyStopping(
    patience=2,
    min_delta=0.01,
    restore_best_weights=True,
    checkpoint_path=os.path.join(out_dir, f"worker{task}", "best.weights.h5"),
)
model.stop_training = False
stopper.set_model(model)
stopper.on_train_begin()
epochs = 0
for epoch in range(20):
    for xb, yb in train_data:
        train_step(xb, yb)
    val_loss = sum(float(val_step(xb, yb)) for xb, yb in val_data) / 32
    stopper.on_epoch_end(epoch, {"val_loss": val_loss})
    epochs += 1
    if model.stop_training:
        break
stopper.on_train_end()
if task == 0:
    model.save(os.path.join(out_dir, "model.keras"))
    # A direct call, not model.predict: predict runs collective ops that the
    # other worker, already finished, would never join.
    predictions = keras.ops.convert_to_numpy(model(x, training=False))
    np.save(os.path.join(out_dir, "restored_predictions.npy"), predictions)
summary = {
    "task": task,
    "epochs": epochs,
    "stopped_epoch": stopper.stopped_epoch,
    "best_epoch": stopper.best_epoch,
}
print(json.dumps(summary))
