"""pipelines.plots: how flat and 2-D images are laid out for drawing."""

from pipelines.plots import grid_shape


def test_grid_shape_keeps_2d_images_and_squares_flat_ones_when_it_can():
    assert grid_shape((28, 28), 784) == (28, 28)
    assert grid_shape((784,), 784) == (28, 28)  # flat MNIST is drawn as the square it was
    assert grid_shape((), 10) == (1, 10)  # not a square: one row
    assert grid_shape((14, 14, 3), 588) == (1, 588)  # colour images are not drawn as grey squares
