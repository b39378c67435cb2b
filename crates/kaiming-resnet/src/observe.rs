//! The one place where the zoo runs its weight layers, so that a data-dependent initialisation
//! (LSUV) can see every convolution's and classifier's output in forward order without a hook
//! in each block.

use std::cell::RefCell;

use burn::module::ParamId;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

/// What an observer is told of one layer's output: the layer's weight and the output's variance
/// over all its elements.
type Observer = Box<dyn FnMut(ParamId, f64)>;

thread_local! {
    static OBSERVER: RefCell<Option<Observer>> = const { RefCell::new(None) };
}

/// Runs `work` with `observer` told the output variance of every weight layer the zoo runs on
/// this thread, in the order they run.
pub(crate) fn observe<R>(
    observer: impl FnMut(ParamId, f64) + 'static,
    work: impl FnOnce() -> R,
) -> R {
    struct Restore(Option<Observer>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OBSERVER.with(|cell| *cell.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(OBSERVER.with(|cell| cell.borrow_mut().replace(Box::new(observer))));
    work()
}

fn notify<const D: usize>(weight: ParamId, output: &Tensor<D>) {
    OBSERVER.with(|cell| {
        if let Some(observer) = cell.borrow_mut().as_mut() {
            let values = output.clone().flatten::<1>(0, D - 1);
            let centred = values.clone() - values.mean();
            let variance = f64::from(centred.powi_scalar(2).mean().into_scalar::<f32>());
            observer(weight, variance);
        }
    });
}

/// Whether an observer is told of this thread's weight layers now.
pub(crate) fn observing() -> bool {
    OBSERVER.with(|cell| cell.borrow().is_some())
}

/// `conv` on `x` through the convolution engine.
pub(crate) fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let output = kaiming_kernels::conv2d(conv, x);
    notify(conv.weight.id, &output);
    output
}

/// The classifier `fc` on `x`.
pub(crate) fn linear(fc: &Linear, x: Tensor<2>) -> Tensor<2> {
    let output = fc.forward(x);
    notify(fc.weight.id, &output);
    output
}
