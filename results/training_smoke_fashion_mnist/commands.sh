set -e
export PYTHONPATH=. OMP_NUM_THREADS=1
T=tools
date
python $T/train_wae.py --dataset fashion_mnist -b 64 --epochs 1 --lr 1e-5 --output runs/fmnist_wae.safetensors -j 0 --no-progress
date
python $T/train.py --dataset fashion_mnist --model wae_resnet18 --stage 2 --model-kwargs wae_weights=runs/fmnist_wae.safetensors --lr 0.05 -b 128 --epochs 1 --sched cosine --train-samples 2048 --val-samples 1024 -j 0 --output runs/fmnist_stage2 --no-progress
date
python $T/train.py --dataset fashion_mnist --model wae_resnet18 --stage 3 --initial-checkpoint runs/fmnist_stage2/model.safetensors --lr 1e-3 -b 128 --epochs 1 --sched cosine --train-samples 2048 --val-samples 1024 -j 0 --output runs/fmnist_stage3 --no-progress
date
