//! Moving between flex tensors and the slices the kernels work on.

use burn::backend::Backend;
use burn::backend::autodiff::Autodiff;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Shape, TensorData};
use burn_flex::FlexTensor;

/// A contiguous tensor with the same values (no copy when it already is one).
pub(crate) fn contiguous(tensor: FlexTensor) -> FlexTensor {
    match tensor.is_contiguous() {
        true => tensor,
        false => tensor.to_contiguous(),
    }
}

/// The values of a contiguous f32 tensor.
pub(crate) fn f32s(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice()
        .expect("a contiguous f32 tensor (checked by the caller)")
}

/// A flex tensor owning `values`.
pub(crate) fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// An autodiff tensor outside the graph (its type does not depend on the checkpointing
/// strategy).
pub(crate) fn untracked<B: Backend>(primitive: FloatTensor<B>) -> FloatTensor<Autodiff<B>> {
    FloatTensor::<Autodiff<B>>::new(primitive)
}
