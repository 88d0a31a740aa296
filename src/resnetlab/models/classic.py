"""The networks the paper measures against (LeNet-5, AlexNet, VGG, GoogLeNet): see issue 5."""
