import pytest
import torch

from resnetlab import conv_output_size, create_model, summarize
from resnetlab.models.summary import same_padding

# Paper Table 1 FLOPs (mult-adds) with the paper's stride placement (stride in the first 1x1).
PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


@pytest.mark.parametrize("name", sorted(PAPER_GMACS))
def test_mult_adds_within_3_percent_of_table_1(name):
    # The paper's stride placement; ResNet-18/34 have no bottleneck, so no placement to choose.
    paper = {"stride_in_1x1": True} if name in ("resnet50", "resnet101", "resnet152") else {}
    s = summarize(create_model(name, **paper), (3, 224, 224))
    assert abs(s.mult_adds / 1e9 - PAPER_GMACS[name]) / PAPER_GMACS[name] < 0.03


def test_v15_bottleneck_costs_more_than_the_paper_placement():
    paper = summarize(create_model("resnet50", stride_in_1x1=True)).mult_adds
    v15 = summarize(create_model("resnet50")).mult_adds
    assert 1.04 < v15 / paper < 1.08  # 4.09 G vs 3.86 G


def test_resnet20_rows_add_up_and_match_hand_counts():
    s = summarize(create_model("resnet20"), (3, 32, 32))
    assert s.params == 269_722 == sum(r.params for r in s.rows)
    assert s.mult_adds == sum(r.mult_adds for r in s.rows)
    rows = {r.name: r for r in s.rows}
    # conv1: 16 filters of 3x3x3 over a 32x32 map.
    assert rows["conv1"].mult_adds == 16 * 3 * 9 * 32 * 32
    assert rows["conv1"].output_shape == [16, 32, 32]
    assert rows["layer3.2.conv2"].output_shape == [64, 8, 8]
    assert rows["fc"].mult_adds == 64 * 10 and rows["fc"].params == 650
    assert rows["layer2.0.downsample"].params == 0


def test_summary_on_grayscale_28px_input():
    s = summarize(create_model("resnet20", in_channels=1), (1, 28, 28))
    rows = {r.name: r for r in s.rows}
    assert rows["layer3.2.bn2"].output_shape == [64, 7, 7]
    assert s.params == 269_722 - 2 * 16 * 9


def test_summary_table_and_dict():
    s = summarize(create_model("resnet8"), (3, 32, 32))
    d = s.to_dict()
    assert isinstance(d["params"], int) and isinstance(d["mult_adds"], int)
    assert "layer1.0.conv1" in s.table() and f"{s.params:,}" in s.table()


def test_summary_leaves_the_model_in_training_mode():
    model = create_model("resnet8").train()
    summarize(model, (3, 32, 32))
    assert model.training


@pytest.mark.parametrize("n,f,s,p,size,exact", [
    (32, 3, 1, 1, 32, True),    # 'same' padding
    (7, 3, 1, 0, 5, True),
    (7, 3, 2, 0, 3, True),
    (7, 3, 3, 0, 2, False),     # (7-3)/3+1 = 2.33: does not tile
    (227, 11, 4, 0, 55, True),  # AlexNet conv1
    (224, 7, 2, 3, 112, False),  # ResNet conv1: floor, one column uncovered
    (56, 1, 2, 0, 28, False),
])
def test_conv_output_size(n, f, s, p, size, exact):
    out = conv_output_size(n, f, s, p)
    assert (out.size, out.exact) == (size, exact)
    # PyTorch agrees.
    conv = torch.nn.Conv2d(1, 1, f, stride=s, padding=p)
    assert conv(torch.zeros(1, 1, n, n)).shape[-1] == size
    assert ("does not tile" in str(out)) == (not exact)


def test_conv_output_size_names_uncovered_rows_and_rejects_bad_input():
    assert conv_output_size(10, 3, 3).uncovered == 1
    assert conv_output_size(11, 3, 3).uncovered == 2
    with pytest.raises(ValueError):
        conv_output_size(3, 5)
    with pytest.raises(ValueError):
        conv_output_size(8, 3, 0)
    assert same_padding(3) == 1 and same_padding(7) == 3
